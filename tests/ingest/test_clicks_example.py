"""examples/clicks.py: sessions by event time, safe to resume from checkpoints."""

from __future__ import annotations

import importlib.util
from typing import Any

import perper
from perper.app import load_app
from perper.runtime import Runtime
from perper.store import LogStore
from perper.testing import check_recoverable
from tests.conftest import EXAMPLES

clicks = load_app(EXAMPLES / "clicks.py")
_spec = importlib.util.spec_from_file_location("clicks_producer", EXAMPLES / "clicks_producer.py")
assert _spec is not None and _spec.loader is not None
producer_example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(producer_example)
event = producer_example.event

CLICKS = [event(p, i, users=20) for i in range(150) for p in (1, 2)]


def sessions_by_hand(events: list[dict[str, Any]], gap: float) -> list[dict[str, Any]]:
    """The sessions the example should find, computed the plain way."""
    found, open_ = [], {}
    for e in events:
        user, time = str(e["user"]), float(e["time"])
        s = open_.get(user)
        if s is not None and time - s["end"] > gap:
            found.append(open_.pop(user))
            s = None
        if s is None:
            open_[user] = {
                "user": user,
                "start": time,
                "end": time,
                "clicks": 1,
                "pages": [e["page"]],
            }
        else:
            s["end"] = max(s["end"], time)
            s["clicks"] += 1
            if e["page"] not in s["pages"]:
                s["pages"].append(e["page"])
    return found + [open_[user] for user in sorted(open_)]


async def test_the_clicks_run_finds_the_sessions_of_the_ingested_events(store: LogStore) -> None:
    async with perper.Producer(store, "shop/clicks") as feed:
        await feed.send_many(CLICKS, keys=[e["event"] for e in CLICKS])
        await feed.seal()
    assert (await Runtime(store, clicks).run("shop", {"gap": 20.0, "every": 10})).ok
    found = [item async for _, item in store.read("shop/sessions-0")]
    assert found == sessions_by_hand(CLICKS, 20.0)
    assert len(found) > 20  # the gap splits sessions, not only the stream's end
    final = [item async for _, item in store.read("shop/report-1")][-1]
    assert final["final"] and final["sessions"] == len(found)
    assert final["clicks"] == len(CLICKS)


def test_sessions_and_report_resume_from_any_checkpoint() -> None:
    fn = clicks.function("sessions")
    check_recoverable(fn, CLICKS[:80], gap=20.0, raise_on_failure=True)
    found = sessions_by_hand(CLICKS[:80], 20.0)
    check_recoverable(clicks.function("report"), found, every=3, raise_on_failure=True)
