"""A wrong app: it yields the members of a set of strings, whose order depends on
PYTHONHASHSEED (the same in one process, different in production's next process)."""

import perper

app = perper.App("hashorder")


@app.stream
async def tags(ctx: perper.Context):
    seen = {"alpha", "beta", "gamma", "delta"}
    for tag in seen:
        yield tag


@app.launcher
async def main(ctx: perper.Context):
    await ctx.start(tags)
