"""A run that queries a stream outside it (issue 14): ``perper run outside_query.py --run r
--param clicks=shop/clicks``, the stream fed (and indexed on ``user``) by a Producer
before and while the run goes.

For every click, ``tallies`` counts the clicks of its user the stream holds: a
``ctx.query`` whose end is the head when it runs, a recorded effect, so the counts depend
on how far the producer had got, and the simulator must have that many clicks in place
when the recorded query runs again.
"""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("outside_query")


@app.stream
async def tallies(ctx: perper.Context, clicks: perper.StreamRef) -> AsyncIterator[Any]:
    async for click in ctx.read(clicks):
        rows = [seq async for seq, _ in ctx.query(clicks, "user = ?", [click["user"]])]
        yield {"i": click["i"], "user": click["user"], "clicks": len(rows)}


@app.launcher
async def main(ctx: perper.Context, clicks: perper.StreamRef) -> None:
    await ctx.start(tallies, clicks)
