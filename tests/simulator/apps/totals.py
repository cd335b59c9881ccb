"""An app over an ingest stream: running totals (checkpoint mode) and their evens."""

import perper

app = perper.App("totals")


@app.stream(recovery="checkpoint", checkpoint_every=2)
async def totals(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["total"] = ctx.state.get("total", 0) + number
        yield ctx.state["total"]


@app.stream
async def evens(ctx: perper.Context, source: perper.StreamRef):
    async for total in ctx.read(source):
        if total % 2 == 0:
            yield total


@app.launcher
async def main(ctx: perper.Context, source: perper.StreamRef):
    await ctx.start(evens, await ctx.start(totals, source))
