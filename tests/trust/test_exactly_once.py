"""Exactly once, as a distrustful user checks it: processes killed with SIGKILL at
seeded random moments, restarted, and the log counted afterwards.

* two producer processes racing to send the same keys, one of them killed and restarted;
* two ``perper ingest`` of one file at once, killed and run again;
* ``perper run`` of an app whose items come from recorded effects (``ctx.uuid()``,
  ``ctx.random()``, ``ctx.now()``), killed and resumed: every item once, the effects the
  same as recorded (the finished run replays identically).

Seeds: ``PERPER_KILL_SEED`` (default 5) picks the moments."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from perper.store import open_store
from tests.conftest import EXAMPLES, ROOT, store_url

PERPER = str(Path(sys.executable).with_name("perper"))
SEED = int(os.environ.get("PERPER_KILL_SEED", "5"))

SENDER = """
import asyncio, sys
import perper
from perper.store import open_store

async def main(url, order, count):
    keys = [f"evt-{i:05d}" for i in range(count)]
    if order == "backward":
        keys.reverse()
    async with open_store(url) as store, perper.Producer(store, "race/in") as events:
        for lo in range(0, count, 50):
            batch = keys[lo : lo + 50]
            await events.send_many([{"key": k} for k in batch], keys=batch)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _head(path: Path, stream: str) -> int:
    """``stream``'s head in the SQLite log ``path`` as another process sees it now (0
    before the file or the stream exists)."""
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT head FROM streams WHERE name = ?", (stream,)).fetchone()
    except sqlite3.OperationalError:  # not created yet (no table), or locked a moment
        return 0
    return 0 if row is None else int(row[0])


def _spawn(command: list[str], err: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its stderr in the file ``err`` (read it on failure)."""
    with err.open("ab") as sink:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sink)


def _finish(process: subprocess.Popen[bytes], err: Path, timeout: float) -> None:
    assert process.wait(timeout=timeout) == 0, err.read_text()


async def _stored(url: str, stream: str) -> list[Any]:
    async with open_store(url) as store:
        return [item async for _, item in store.read(stream)]


async def _wait_for(url: str, stream: str, at_least: int, timeout: float = 60) -> None:
    async with open_store(url) as store, asyncio.timeout(timeout):
        while await store.head(stream) < at_least:
            await store.wait(stream, at_least - 1, timeout=0.05)


@pytest.mark.parametrize("store_kind", ["sqlite", "ignite"])
def test_two_producers_racing_on_the_same_keys_one_killed_store_each_key_once(
    store_kind: str, tmp_path: Path
) -> None:
    if store_kind == "ignite" and not os.environ.get("PERPER_TEST_IGNITE"):
        pytest.skip("needs PERPER_TEST_IGNITE")
    count = 4000
    url = store_url(store_kind, tmp_path)
    rng = random.Random(SEED)
    script = tmp_path / "sender.py"
    script.write_text(SENDER)

    err = tmp_path / "senders.err"

    def sender(order: str) -> subprocess.Popen[bytes]:
        return _spawn([sys.executable, str(script), url, order, str(count)], err)

    forward, backward = sender("forward"), sender("backward")
    killed = 0
    for _ in range(3):  # kill the forward one at a random point, restart it
        asyncio.run(_wait_for(url, "race/in", rng.randrange(200, count // 2)))
        if forward.poll() is None:
            forward.send_signal(signal.SIGKILL)
            forward.wait()
            killed += 1
        forward = sender("forward")
    for process in (forward, backward):
        _finish(process, err, 120)
    items = asyncio.run(_stored(url, "race/in"))
    keys = [item["key"] for item in items]
    assert len(keys) == len(set(keys)) == count, f"{len(keys)} items, {len(set(keys))} keys"
    assert killed > 0  # the race was really interrupted


def _lines(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"event": f"e{i}", "n": i}) + "\n" for i in range(count)))
    return path


def test_two_perper_ingest_of_one_file_killed_and_run_again_store_each_line_once(
    tmp_path: Path,
) -> None:
    count = 60_000
    url = f"sqlite:///{tmp_path / 'log.db'}"
    feed = _lines(tmp_path / "events.jsonl", count)
    command = [PERPER, "ingest", "r/clicks", str(feed), "--store", url, "--key", "event"]
    rng = random.Random(SEED)

    err = tmp_path / "ingest.err"

    def ingest(batch: int) -> subprocess.Popen[bytes]:
        return _spawn([*command, "--batch", str(batch)], err)

    one, two = ingest(500), ingest(70)
    asyncio.run(_wait_for(url, "r/clicks", rng.randrange(2_000, count // 3)))
    one.send_signal(signal.SIGKILL)
    asyncio.run(_wait_for(url, "r/clicks", rng.randrange(count // 3, count // 2)))
    two.send_signal(signal.SIGKILL)
    assert one.wait() == -signal.SIGKILL and two.wait() == -signal.SIGKILL
    assert len(asyncio.run(_stored(url, "r/clicks"))) < count  # really killed mid-way
    again = [ingest(500), ingest(300)]
    for process in again:
        _finish(process, err, 300)
    items = asyncio.run(_stored(url, "r/clicks"))
    assert sorted(item["n"] for item in items) == list(range(count))


@pytest.mark.slow
def test_a_run_of_recorded_effects_killed_at_random_moments_resumes_exactly_once(
    tmp_path: Path,
) -> None:
    count = 200_000
    url = f"sqlite:///{tmp_path / 'effects.db'}"
    command = [
        PERPER, "run", str(EXAMPLES / "effects.py"), "--store", url, "--run", "e",
        "--param", f"count={count}", "--param", "rate=0.5", "-q",
    ]  # fmt: skip
    rng = random.Random(SEED)
    # Killed when its output reaches seeded points, not after seeded sleeps: a fast
    # machine finished the run before the first sleep ended, and nothing was killed.
    targets = sorted(rng.randrange(count // 20, count * 9 // 10) for _ in range(3))
    kills = 0
    for target in targets:
        run = _spawn(command, tmp_path / "run.err")
        while run.poll() is None and _head(tmp_path / "effects.db", "e/orders-0") < target:
            time.sleep(0.01)  # the test's own pacing, not the runtime's
        if run.poll() is not None:
            break
        run.send_signal(signal.SIGKILL)
        run.wait()
        kills += 1
    final = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert kills > 0
    orders = asyncio.run(_stored(url, "e/orders-0"))
    samples = asyncio.run(_stored(url, "e/sampler-1"))
    assert [o["order"] for o in orders] == list(range(count))
    assert len({o["id"] for o in orders}) == count  # every recorded uuid once
    seen = [s["order"] for s in samples]
    assert seen == sorted(set(seen))  # no sample twice, none out of order
    assert all(orders[s["order"]]["id"] == s["id"] for s in samples)
    # Run again: finished, it replays read-only, and today's code reproduces every item
    # from the recorded effects.
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "reproduces the run" in again.stderr
