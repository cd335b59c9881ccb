"""Example (c), the generator agent type: on start it starts a stream of 0..count-1 and
keeps the stream's ref in its agent state; ``stream()`` returns it. Started by
``sums.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import perper

app = perper.App("generator")


@app.stream
async def numbers(ctx: perper.Context, count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


@app.launcher
async def start(ctx: perper.Context, count: int) -> None:
    await ctx.agent_state.set("stream", await ctx.start(numbers, count))


@app.call
async def stream(ctx: perper.Context) -> perper.StreamRef:
    ref: perper.StreamRef = await ctx.agent_state.get("stream")
    return ref
