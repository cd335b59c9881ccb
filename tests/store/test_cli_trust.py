"""The trust guarantees as a user meets them on the command line: a corrupt log makes
``streams cat``, ``export`` and ``replay`` exit 2 naming the stream and the seq, writing
nothing; export and mirror refuse unusable sources with exit 2, never a traceback; and
``export --flat`` keeps every field or says why it cannot."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from perper.store import open_store
from tests.conftest import EXAMPLES, ROOT

CLEAN = ROOT / "fixtures" / "basic-clean.db"
STREAM = "clean/generator-0"


def perper(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *map(str, args)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip


def corrupt(tmp_path: Path, how: str) -> Path:
    log = tmp_path / f"{how}.db"
    shutil.copy(CLEAN, log)
    db = sqlite3.connect(log)
    (stream_id,) = db.execute("SELECT id FROM streams WHERE name = ?", (STREAM,)).fetchone()
    where = "stream_id = ? AND first_seq = 500"
    if how == "flip":
        (data,) = db.execute(f"SELECT data FROM segments WHERE {where}", (stream_id,)).fetchone()
        data = data[:-2] + bytes([data[-2] ^ 0x04]) + data[-1:]
        db.execute(f"UPDATE segments SET data = ? WHERE {where}", (data, stream_id))
    elif how == "delete":
        db.execute(f"DELETE FROM segments WHERE {where}", (stream_id,))
    else:
        db.execute("UPDATE streams SET head = head + 5 WHERE id = ?", (stream_id,))
    db.commit()
    db.close()
    return log


SEQ = {"flip": "seq 500", "delete": "seq 500", "bump": "seq 1000"}


@pytest.mark.parametrize("how", ["flip", "delete", "bump"])
def test_streams_cat_of_a_corrupt_log_exits_2_naming_stream_and_seq(
    tmp_path: Path, how: str
) -> None:
    log = corrupt(tmp_path, how)
    done = perper("streams", "cat", STREAM, "--store", f"sqlite:///{log}")
    assert done.returncode == 2, done.stderr
    assert STREAM in done.stderr and SEQ[how] in done.stderr and "corrupt" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("how", ["flip", "delete", "bump"])
def test_export_of_a_corrupt_log_exits_2_and_writes_nothing(tmp_path: Path, how: str) -> None:
    log = corrupt(tmp_path, how)
    before = log.read_bytes()
    out = tmp_path / "out" / "copy.sqlite"
    out.parent.mkdir()
    done = perper("export", f"sqlite:///{log}", out)
    assert done.returncode == 2, done.stderr
    assert STREAM in done.stderr and SEQ[how] in done.stderr and "corrupt" in done.stderr
    assert list(out.parent.iterdir()) == []  # nothing written, not even a partial file
    assert log.read_bytes() == before  # the source is read-only


@pytest.mark.parametrize("how", ["flip", "delete", "bump"])
def test_replay_of_a_corrupt_log_exits_2_saying_the_log_is_corrupt(
    tmp_path: Path, how: str
) -> None:
    log = corrupt(tmp_path, how)
    done = perper("replay", log, EXAMPLES / "basic.py")
    assert done.returncode == 2, done.stdout + done.stderr
    assert STREAM in done.stderr and SEQ[how] in done.stderr and "corrupt" in done.stderr
    assert "diverged" not in done.stdout


def _another_app_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER)")
    db.commit()
    db.close()


def _future_format(path: Path) -> None:
    shutil.copy(CLEAN, path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()


SOURCES = {
    "not-sqlite": (lambda p: p.write_text("hello, not a database\n"), "not a SQLite database"),
    "another-app": (_another_app_db, "not a perper log"),
    "future-format": (_future_format, "format 99"),
    "empty-file": (lambda p: p.write_bytes(b""), "empty file"),
}


@pytest.mark.parametrize("command", ["export", "mirror"])
@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_an_unusable_source_file_exits_2_with_a_clear_error(
    tmp_path: Path, kind: str, command: str
) -> None:
    make, expected = SOURCES[kind]
    source = tmp_path / "src.db"
    make(source)
    before = source.read_bytes()
    dest = tmp_path / "dest.sqlite"
    target = str(dest) if command == "export" else f"sqlite:///{dest}"
    done = perper(command, f"sqlite:///{source}", target)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr
    assert source.read_bytes() == before
    assert not dest.exists() or command == "mirror"


async def _flat_source(tmp_path: Path, items: list[object]) -> str:
    url = f"sqlite:///{tmp_path / 'src.db'}"
    async with open_store(url) as store:
        await store.append("r/s", 0, items)
    return url


async def test_export_flat_keeps_a_field_named_seq_underscore(tmp_path: Path) -> None:
    url = await _flat_source(tmp_path, [{"seq": 10, "seq_": 20, "x": 1}, {"seq_": 21}])
    out = tmp_path / "flat.sqlite"
    done = perper("export", url, out, "--flat")
    assert done.returncode == 0, done.stderr
    db = sqlite3.connect(out)
    rows = db.execute('SELECT seq, seq_, seq__, x FROM "r/s" ORDER BY seq').fetchall()
    db.close()
    assert rows == [(0, 10, 20, 1), (1, None, 21, None)]


async def test_export_flat_of_fields_differing_only_in_case_exits_2_naming_them(
    tmp_path: Path,
) -> None:
    url = await _flat_source(tmp_path, [{"Amount": 1}, {"amount": 2}])
    out = tmp_path / "flat.sqlite"
    done = perper("export", url, out, "--flat")
    assert done.returncode == 2, done.stderr
    assert "'amount'" in done.stderr and "'Amount'" in done.stderr and "seq 1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


READER = """
from collections.abc import AsyncIterator
import perper
app = perper.App("reader")

@app.stream
async def copy(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    async for item in ctx.read(source):
        yield item["value"]

@app.launcher
async def main(ctx: perper.Context, source: perper.StreamRef) -> None:
    await ctx.start(copy, source)
"""


@pytest.mark.parametrize("how", ["flip", "delete", "bump"])
def test_a_run_reading_a_corrupt_stream_exits_2_naming_it_and_stops_writing(
    tmp_path: Path, how: str
) -> None:
    log = corrupt(tmp_path, how)
    app = tmp_path / "reader.py"
    app.write_text(READER)
    url = f"sqlite:///{log}"
    done = perper("run", app, "--store", url, "--run", "r2", "--param", f"source={STREAM}", "-q")
    assert done.returncode == 2, done.stderr  # corruption, not "an execution failed" (1)
    assert STREAM in done.stderr and SEQ[how] in done.stderr and "corrupt" in done.stderr
    db = sqlite3.connect(log)
    row = db.execute("SELECT head, sealed FROM streams WHERE name = 'r2/copy-0'").fetchone()
    db.close()
    head, sealed = row or (0, 0)
    corrupt_at = 1000 if how == "bump" else 500
    assert head <= corrupt_at and not sealed  # nothing past the corrupt position, not sealed
