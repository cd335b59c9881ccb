"""Example (c), the processor agent type: on start it starts the running sums of a
source stream and keeps that stream's ref in its agent state; ``output()`` returns it.
Started by ``sums.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import perper

app = perper.App("processor")


@app.stream
async def running_sum(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    total = 0
    async for value in ctx.read(source):
        total += value
        yield total


@app.launcher
async def start(ctx: perper.Context, source: perper.StreamRef) -> None:
    await ctx.agent_state.set("output", await ctx.start(running_sum, source))


@app.call
async def output(ctx: perper.Context) -> perper.StreamRef:
    ref: perper.StreamRef = await ctx.agent_state.get("output")
    return ref
