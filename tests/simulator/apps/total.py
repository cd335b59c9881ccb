"""Issue 9's ``total``: a checkpoint-mode sum yielded once, after its input loop ends.

Its one output item is produced after the last input item, so a checkpoint taken at
the end of the input must not claim the yield that follows it.

    python -m simulator run tests/simulator/apps/total.py --seeds 0..1999
"""

import perper

app = perper.App("total")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint")
async def total(ctx: perper.Context, source: perper.StreamRef):
    ctx.state.setdefault("sum", 0)
    async for x in ctx.read(source):
        ctx.state["sum"] += x
    yield ctx.state["sum"]


@app.launcher
async def main(ctx: perper.Context, count: int = 20):
    await ctx.start(total, await ctx.start(numbers, count=count))
