"""A 3-stage pipeline (numbers -> doubled -> total) for the retention tests and bench."""

from __future__ import annotations

import asyncio
from typing import Any

import perper


def build_app(
    *, retention: str = "ephemeral", recovery: str = "checkpoint", every: int = 100
) -> perper.App:
    """The pipeline with its first two stages' ``retention`` and the middle stage's
    ``recovery``; the readers checkpoint every ``every`` items."""
    app = perper.App("retention")

    @app.stream(retention=retention, recovery="checkpoint")
    async def numbers(ctx: perper.Context, count: int) -> Any:
        for i in range(ctx.state.setdefault("next", 0), count):
            ctx.state["next"] = i + 1
            if i % 50 == 0:
                # A paced source, like a producer: perper has no backpressure, so a writer
                # that never lets its readers run stores everything before they trim.
                await asyncio.sleep(0)
            yield i

    @app.stream(retention=retention, recovery=recovery, checkpoint_every=every)
    async def doubled(ctx: perper.Context, source: perper.StreamRef) -> Any:
        async for x in ctx.read(source):
            yield 2 * x

    @app.stream(recovery="checkpoint", checkpoint_every=every)
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

    return app


def expected_totals(count: int) -> list[int]:
    """What ``total`` yields over ``count`` numbers."""
    sums, running = [], 0
    for i in range(count):
        running += 2 * i
        if (i + 1) % 1000 == 0:
            sums.append(running)
    return [*sums, running]
