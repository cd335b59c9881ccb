"""A wrong app: its outputs read the wall clock directly (time.time(), not ctx.now())."""

import time

import perper

app = perper.App("wallclock")


@app.stream
async def stamped(ctx: perper.Context, count: int):
    for i in range(count):
        yield {"i": i, "at": time.time()}


@app.launcher
async def main(ctx: perper.Context, count: int = 5):
    await ctx.start(stamped, count=count)
