"""The seed example: a generator feeding a batching processor feeding a logging consumer.

perper run examples/basic.py --param count=10
"""

from collections.abc import AsyncIterator

import perper

app = perper.App("basic")


@app.stream
async def generator(ctx: perper.Context, count: int) -> AsyncIterator[dict[str, int]]:
    for i in range(count):
        yield {"value": i}


@app.stream
async def processor(
    ctx: perper.Context, source: perper.StreamRef, batch_size: int
) -> AsyncIterator[list[int]]:
    batch = ctx.state.setdefault("batch", [])
    async for item in ctx.read(source):
        batch.append(item["value"])
        if len(batch) == batch_size:
            yield list(batch)
            batch.clear()
    if batch:  # the last, partial batch
        yield list(batch)
        batch.clear()


@app.action
async def consumer(ctx: perper.Context, source: perper.StreamRef) -> None:
    async for batch in ctx.read(source):
        ctx.log.info("consumer received %s", batch)


@app.launcher
async def main(ctx: perper.Context, count: int = 10) -> None:
    gen = await ctx.start(generator, count=count)
    proc = await ctx.start(processor, gen, batch_size=3)
    await ctx.start(consumer, proc)
