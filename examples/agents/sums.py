"""Example (c): a generator agent and a processor agent that keep their streams in agent
state; the launcher prints the running sums of 0..99.

    perper run examples/agents/sums.py --run sums-1

prints 100 lines: 0, 1, 3, 6, ..., 4950.
"""

from __future__ import annotations

from generator import app as generator
from processor import app as processor

import perper

app = perper.App("sums")


@app.action
async def printer(ctx: perper.Context, sums: perper.StreamRef) -> None:
    async for total in ctx.read(sums):
        print(total, flush=True)


@app.launcher
async def main(ctx: perper.Context, count: int = 100) -> None:
    numbers = await ctx.start_agent(generator, count)
    source = await numbers.call("stream")
    sums = await ctx.start_agent(processor, source)
    await ctx.start(printer, await sums.call("output"))
