"""A correct checkpoint-mode app: all memory between items lives in ctx.state."""

import perper

app = perper.App("checkpointed")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint", checkpoint_every=3)
async def running_total(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["total"] = ctx.state.get("total", 0) + number
        yield ctx.state["total"]


@app.action
async def sink(ctx: perper.Context, source: perper.StreamRef):
    async for _ in ctx.read(source):
        pass


@app.launcher
async def main(ctx: perper.Context, count: int = 30):
    totals = await ctx.start(running_total, await ctx.start(numbers, count=count))
    await ctx.start(sink, totals)
