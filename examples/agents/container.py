"""Example (b), the agent type: a container whose instances each draw one ``ctx.uuid()``
when started and answer ``test(x)`` with it (Perper's "container" sample). Started by
``usage.py``; not run on its own."""

from __future__ import annotations

import perper

app = perper.App("container")


@app.launcher
async def start(ctx: perper.Context) -> None:
    await ctx.agent_state.set("id", str(ctx.uuid()))


@app.call
async def test(ctx: perper.Context, x: int) -> list[object]:
    return [await ctx.agent_state.get("id"), x]


@app.stop
async def stop(ctx: perper.Context) -> None:
    await ctx.agent_state.set("stopped", True)
