"""A checkpoint a disk or a person changed, met by a resumed ``perper run``: it must be
reported as corruption (exit 2, naming the execution's checkpoint), and must not be
resumed from, written over or turned into a "failed" execution.

The checkpoint is made the real way: a run of a checkpoint-mode function SIGKILLed once
its first checkpoint with a read position is stored."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ormsgpack
import pytest

from tests.trust.helpers import refused_clearly

APP = """
from collections.abc import AsyncIterator
import perper
app = perper.App("total")

@app.stream
async def numbers(ctx: perper.Context, count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i

@app.stream(recovery="checkpoint", checkpoint_every=100)
async def total(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    async for number in ctx.read(source):
        ctx.state["total"] = ctx.state.get("total", 0) + number
        yield ctx.state["total"]

@app.launcher
async def main(ctx: perper.Context, count: int = 50) -> None:
    await ctx.start(total, await ctx.start(numbers, count=count))
"""
COUNT = 100_000
KEY = "t/total-1"


def _command(app: Path, log: Path) -> list[str]:
    return [
        sys.executable, "-m", "perper.cli", "run", str(app), "--store", f"sqlite:///{log}",
        "--run", "t", "--param", f"count={COUNT}", "-q",
    ]  # fmt: skip


def _checkpoint(log: Path) -> dict[str, Any] | None:
    db = sqlite3.connect(log)
    try:
        row = db.execute("SELECT value FROM checkpoints WHERE key = ?", (KEY,)).fetchone()
    except sqlite3.OperationalError:  # the tables are not made yet
        row = None
    finally:
        db.close()
    return None if row is None else ormsgpack.unpackb(row[0])


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A log whose run ``t`` was SIGKILLed with a checkpoint of ``total`` inside its read."""
    folder = tmp_path_factory.mktemp("killed")
    app, log = folder / "total.py", folder / "base.db"
    app.write_text(APP)
    run = subprocess.Popen(_command(app, log), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = _checkpoint(log) if log.exists() else None
            if found and found["positions"] and 0 < found["out"] < COUNT:
                break
            time.sleep(0.02)  # the test's own polling, not the runtime's
        else:
            pytest.fail("no checkpoint inside the read within 60 s")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    db = sqlite3.connect(log)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    checkpoint = _checkpoint(log)
    assert checkpoint is not None
    return log, checkpoint


def _damaged(tmp_path: Path, killed: tuple[Path, dict[str, Any]], value: bytes) -> Path:
    base, _ = killed
    log = tmp_path / "log.db"
    shutil.copy(base, log)
    db = sqlite3.connect(log)
    db.execute("UPDATE checkpoints SET value = ? WHERE key = ?", (value, KEY))
    db.commit()
    db.close()
    (tmp_path / "total.py").write_text(APP)
    return log


def _status(log: Path) -> str:
    db = sqlite3.connect(log)
    (value,) = db.execute("SELECT value FROM executions WHERE key = ?", (KEY,)).fetchone()
    db.close()
    return str(ormsgpack.unpackb(value)["status"])


def test_a_checkpoint_that_is_not_msgpack_stops_the_resume_with_exit_2_naming_it(
    tmp_path: Path, killed: tuple[Path, dict[str, Any]]
) -> None:
    log = _damaged(tmp_path, killed, b"\xc1")
    done = subprocess.run(_command(tmp_path / "total.py", log), capture_output=True, text=True)
    refused_clearly(done, f"checkpoints entry {KEY!r}", "corrupt")
    assert _status(log) == "running"  # left to resume after a repair, not failed


def _reshaped(checkpoint: dict[str, Any], field: str) -> dict[str, Any]:
    changed = dict(checkpoint)
    changed[field] = {"state": 7, "positions": 5, "out": "x"}[field]
    return changed


@pytest.mark.parametrize("field", ["state", "positions", "out"])
def test_a_checkpoint_of_the_wrong_shape_stops_the_resume_with_exit_2_naming_it(
    tmp_path: Path, killed: tuple[Path, dict[str, Any]], field: str
) -> None:
    value = ormsgpack.packb(_reshaped(killed[1], field))
    log = _damaged(tmp_path, killed, value)
    done = subprocess.run(_command(tmp_path / "total.py", log), capture_output=True, text=True)
    refused_clearly(done, KEY, "checkpoint", "corrupt")
    assert _status(log) == "running"


def test_a_checkpointed_read_position_beyond_the_input_is_not_silently_skipped_to(
    tmp_path: Path, killed: tuple[Path, dict[str, Any]]
) -> None:
    checkpoint = dict(killed[1])
    checkpoint["positions"] = [[p[0], 10 * COUNT, *p[2:]] for p in checkpoint["positions"]]
    log = _damaged(tmp_path, killed, ormsgpack.packb(checkpoint))
    done = subprocess.run(
        _command(tmp_path / "total.py", log), capture_output=True, text=True, timeout=300
    )
    db = sqlite3.connect(log)
    (head,) = db.execute("SELECT head FROM streams WHERE name = ?", (KEY,)).fetchone()
    db.close()
    # Either reported (exit 2), or every input item reached the output: never "done"
    # with items missing.
    assert done.returncode == 2 or head == COUNT, f"exit {done.returncode}, {head} items"
    refused_clearly(done, KEY, "corrupt")
