"""A planted bug for the simulator to catch: a call keeps a counter in a module global
instead of agent state, so a call executed again (after a crash, on another worker, in
another run) answers differently."""

from __future__ import annotations

from collections.abc import AsyncIterator

import perper

app = perper.App("global_counter")

COUNTER = [0]  # the bug: memory outside the logs


@app.call
async def next_id(ctx: perper.Context) -> int:
    COUNTER[0] += 1
    return COUNTER[0]


@app.stream
async def ids(ctx: perper.Context, values: list[int]) -> AsyncIterator[int]:
    for value in values:
        yield value


@app.launcher
async def main(ctx: perper.Context, count: int = 5) -> None:
    await ctx.start(ids, [await ctx.call(next_id) for _ in range(count)])
