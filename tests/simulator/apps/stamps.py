"""An app over an ingest stream whose outputs carry ctx.now(): correct, yet no two
deployments write the same items (each records its own clock)."""

import perper

app = perper.App("stamps")


@app.stream(recovery="checkpoint", checkpoint_every=2)
async def stamped(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        yield {"number": number, "count": ctx.state["count"], "at": ctx.now()}


@app.launcher
async def main(ctx: perper.Context, source: perper.StreamRef):
    await ctx.start(stamped, source)
