"""A function that is NOT safe for the recovery mode it declares — the simulator's demo.

``running_total`` keeps its total in a local variable but declares
``recovery="checkpoint"``: after a crash it resumes from its last checkpoint with the
total back at 0, and its output differs from an uncrashed run. The fix is one line: keep
the total in ``ctx.state`` (or drop ``recovery="checkpoint"``).

    python -m simulator run examples/running_total.py --seeds 0..199
"""

from collections.abc import AsyncIterator

import perper

app = perper.App("running_total")


@app.stream
async def numbers(ctx: perper.Context, count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint", checkpoint_every=5)
async def running_total(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    total = 0  # BUG: lost on recovery from a checkpoint; ctx.state["total"] would survive
    async for number in ctx.read(source):
        total += number
        yield total


@app.launcher
async def main(ctx: perper.Context, count: int = 50) -> None:
    await ctx.start(running_total, await ctx.start(numbers, count=count))
