"""A run over a stream outside it (issue 14): the launcher takes a ``perper.StreamRef``
parameter, ``perper run outside_clicks.py --run r --param clicks=shop/clicks``, to a
stream a Producer feeds before and while the run goes.

``counts`` reads every click from seq 0 (per-user running counts: the order matters);
``live`` reads from the head at its ``ctx.read(start="live")`` call, a recorded effect,
so it sees only the clicks sent after it started.
"""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("outside")


@app.stream
async def counts(ctx: perper.Context, clicks: perper.StreamRef) -> AsyncIterator[Any]:
    seen: dict[str, int] = ctx.state.setdefault("seen", {})
    async for click in ctx.read(clicks):
        user = str(click["user"])
        seen[user] = seen.get(user, 0) + 1
        yield {"user": click["user"], "page": click["page"], "n": seen[user]}


@app.stream
async def live(ctx: perper.Context, clicks: perper.StreamRef) -> AsyncIterator[Any]:
    async for seq, click in ctx.read(clicks, start="live", with_seq=True):
        yield [seq, click["page"]]


@app.launcher
async def main(ctx: perper.Context, clicks: perper.StreamRef) -> None:
    await ctx.start(counts, clicks)
    await ctx.start(live, clicks)
