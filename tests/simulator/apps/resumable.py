"""Checkpoint-mode functions that do work outside their input loops: a prologue that
yields, records an effect and starts a stream; an early exit from a loop; a second read
after the first; and an epilogue. Each item must still be written exactly once.

    python -m simulator run tests/simulator/apps/resumable.py --seeds 0..999
"""

import perper

app = perper.App("resumable")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint", checkpoint_every=2)
async def framed(ctx: perper.Context, source: perper.StreamRef, count: int):
    token = ctx.uuid().hex[:8]  # an effect before the first read
    yield {"header": token}
    extra = await ctx.start(numbers, count=3)  # a start before the first read
    async for x in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + x
        yield {"token": token, "sum": ctx.state["sum"]}
        if x >= count // 2:
            break  # leave the first loop early
    async for y in ctx.read(extra):
        ctx.state["extra"] = ctx.state.get("extra", 0) + y
    yield {"footer": token, "sum": ctx.state.get("sum"), "extra": ctx.state.get("extra")}


@app.action
async def sink(ctx: perper.Context, source: perper.StreamRef):
    async for _ in ctx.read(source):
        pass


@app.launcher
async def main(ctx: perper.Context, count: int = 12):
    source = await ctx.start(numbers, count=count)
    await ctx.start(sink, await ctx.start(framed, source, count=count))
