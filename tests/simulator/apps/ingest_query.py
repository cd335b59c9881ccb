"""``outside_query.py`` over the run's own ingest stream ``{run}/clicks``
(``ctx.ingest``): the recorded queries' ends must be in place in the simulator too."""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("ingest_query")


@app.stream
async def tallies(ctx: perper.Context, clicks: perper.StreamRef) -> AsyncIterator[Any]:
    async for click in ctx.read(clicks):
        rows = [seq async for seq, _ in ctx.query(clicks, "user = ?", [click["user"]])]
        yield {"i": click["i"], "user": click["user"], "clicks": len(rows)}


@app.launcher
async def main(ctx: perper.Context) -> None:
    await ctx.start(tallies, ctx.ingest("clicks", index={"user": int}))
