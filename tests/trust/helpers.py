"""What the trust probes share: a copy of the clean fixture log to damage, and the
``perper`` command as a user runs it."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

CLEAN = ROOT / "fixtures" / "basic-clean.db"
STREAM = "clean/generator-0"  # 1,000 items, in segments of 100 (seq 0..99, 100..199, ...)


def perper(*args: str | Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip


def damaged_copy(tmp_path: Path, name: str, *statements: tuple[str, tuple[object, ...]]) -> Path:
    """A copy of the clean fixture with ``statements`` (SQL, parameters) applied to it, as
    a person with the sqlite3 shell (or a disk) would change it."""
    log = tmp_path / f"{name}.db"
    shutil.copy(CLEAN, log)
    db = sqlite3.connect(log)
    for sql, params in statements:
        db.execute(sql, params)
    db.commit()
    db.close()
    return log


def stream_id(log: Path, name: str = STREAM) -> int:
    db = sqlite3.connect(log)
    try:
        (found,) = db.execute("SELECT id FROM streams WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    return int(found)


def refused_clearly(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    """Exit 2 (bad input: a corrupt log), the message naming ``expected``, no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    for text in expected:
        assert text in done.stderr, done.stderr
