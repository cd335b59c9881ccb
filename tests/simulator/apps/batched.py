"""A batch pipeline in checkpoint mode: ctx.read_batches in, perper.Batch out.

numbers -> running totals (a Batch per input batch) -> squares of every third total
(per-item reads of a batch-written stream) -> a sink that counts batches it reads.
All memory between batches lives in ctx.state, so every recovery reproduces the output.
"""

import perper

app = perper.App("batched")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for start in range(0, count, 7):
        yield perper.Batch(range(start, min(start + 7, count)))


@app.stream(recovery="checkpoint", checkpoint_every=5)
async def running_totals(ctx: perper.Context, source: perper.StreamRef):
    async for batch in ctx.read_batches(source):
        totals = []
        for number in batch:
            ctx.state["total"] = ctx.state.get("total", 0) + number
            totals.append(ctx.state["total"])
        yield perper.Batch(totals)


@app.stream(recovery="checkpoint", checkpoint_every=2)
async def thirds(ctx: perper.Context, source: perper.StreamRef):
    async for total in ctx.read(source):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        if ctx.state["n"] % 3 == 0:
            yield total * total


@app.action(recovery="checkpoint", checkpoint_every=1)
async def sink(ctx: perper.Context, source: perper.StreamRef):
    async for seq, batch in ctx.read_batches(source, with_seq=True):
        ctx.state["items"] = ctx.state.get("items", 0) + len(batch)
        assert seq + len(batch) == ctx.state["items"], "a batch starts where the last ended"


@app.launcher
async def main(ctx: perper.Context, count: int = 60):
    totals = await ctx.start(running_totals, await ctx.start(numbers, count=count))
    await ctx.start(sink, await ctx.start(thirds, totals))
