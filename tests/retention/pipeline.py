"""A 3-stage pipeline with ephemeral middle stages, shared by the retention tests."""

from __future__ import annotations

from typing import Any

import perper

app = perper.App("retention")


@app.stream(retention="ephemeral", recovery="checkpoint")
async def numbers(ctx: perper.Context, count: int) -> Any:
    start = ctx.state.setdefault("next", 0)
    for i in range(start, count):
        ctx.state["next"] = i + 1
        yield i


@app.stream(retention="ephemeral", recovery="checkpoint", checkpoint_every=100)
async def doubled(ctx: perper.Context, source: perper.StreamRef) -> Any:
    async for x in ctx.read(source):
        yield 2 * x


@app.stream(recovery="checkpoint", checkpoint_every=100)
async def total(ctx: perper.Context, source: perper.StreamRef) -> Any:
    ctx.state.setdefault("sum", 0)
    ctx.state.setdefault("count", 0)
    async for x in ctx.read(source):
        ctx.state["sum"] += x
        ctx.state["count"] += 1
        if ctx.state["count"] % 1000 == 0:
            yield ctx.state["sum"]
    yield ctx.state["sum"]


@app.launcher
async def main(ctx: perper.Context, count: int = 5000) -> None:
    source = await ctx.start(numbers, count=count)
    middle = await ctx.start(doubled, source)
    await ctx.start(total, middle)
