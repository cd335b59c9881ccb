"""A wrong app over an ingest stream: it declares recovery='checkpoint' but keeps its
running total in a local variable, so a crash after a checkpoint restarts it at 0."""

import perper

app = perper.App("forgetful")


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def totals(ctx: perper.Context, source: perper.StreamRef):
    total = 0
    async for number in ctx.read(source):
        total += number
        yield total


@app.launcher
async def main(ctx: perper.Context, source: perper.StreamRef):
    await ctx.start(totals, source)
