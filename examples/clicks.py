"""Click events from outside -> per-user sessions (by event time) -> a report.

The clicks come from an ingest stream that programs outside the run feed
(examples/clicks_producer.py, or ``perper ingest``):

    perper run examples/clicks.py --run shop &
    python examples/clicks_producer.py --run shop --producer 1 --count 1000 --seal
    perper streams cat shop/report-1

A session is a user's clicks with no gap longer than ``gap`` seconds of *event* time
(the ``time`` field of each click, not when it arrived); the run ends once the ingest
stream is sealed, closing every session still open.
"""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("clicks")


def _closed(user: str, session: list[Any]) -> dict[str, Any]:
    start, end, clicks, pages = session
    return {"user": user, "start": start, "end": end, "clicks": clicks, "pages": pages}


@app.stream(recovery="checkpoint")
async def sessions(
    ctx: perper.Context, clicks: perper.StreamRef, gap: float
) -> AsyncIterator[dict[str, Any]]:
    # user -> [first time, last time, clicks, distinct pages]; all memory is in ctx.state,
    # so the function resumes from its last checkpoint.
    open_sessions: dict[str, list[Any]] = ctx.state.setdefault("open", {})
    async for click in ctx.read(clicks):
        user, time, page = str(click["user"]), float(click["time"]), click["page"]
        session = open_sessions.get(user)
        if session is not None and time - session[1] > gap:
            yield _closed(user, session)
            session = None
        if session is None:
            open_sessions[user] = [time, time, 1, [page]]
        else:
            session[1] = max(session[1], time)
            session[2] += 1
            if page not in session[3]:
                session[3].append(page)
    for user in sorted(open_sessions):
        yield _closed(user, open_sessions.pop(user))


@app.stream(recovery="checkpoint")
async def report(
    ctx: perper.Context, sessions: perper.StreamRef, every: int
) -> AsyncIterator[dict[str, Any]]:
    totals = ctx.state.setdefault("totals", {"sessions": 0, "clicks": 0, "longest": 0.0})
    async for session in ctx.read(sessions):
        totals["sessions"] += 1
        totals["clicks"] += session["clicks"]
        totals["longest"] = max(totals["longest"], session["end"] - session["start"])
        if totals["sessions"] % every == 0:
            yield dict(totals)
    ctx.log.info("clicks report: %s", totals)
    yield {**totals, "final": True}


@app.launcher
async def main(ctx: perper.Context, gap: float = 300.0, every: int = 1000) -> None:
    found = await ctx.start(sessions, ctx.ingest("clicks"), gap=gap)
    await ctx.start(report, found, every=every)
