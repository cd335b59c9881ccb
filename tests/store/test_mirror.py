"""Copying stores: export into SQLite, mirror between stores, follow, flat tables, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from perper.app import load_app
from perper.runtime import Runtime
from perper.store import LogStore, open_store
from perper.store.base import META_TABLES
from perper.store.mirror import CopyStats, copy_store, follow
from tests.conftest import EXAMPLES, ROOT

basic = load_app(EXAMPLES / "basic.py")
effects = load_app(EXAMPLES / "effects.py")


async def snapshot(store: LogStore, *, prefix: str = "") -> dict[str, Any]:
    """Everything a store holds under ``prefix``, versions of metadata left out."""
    streams = {}
    for info in await store.streams(prefix=prefix):
        items = [item async for _, item in store.read(info.name)]
        streams[info.name] = (info.head, info.sealed, info.epoch, items)
    meta = {
        table: {key: entry.value for key, entry in await store.meta_scan(table)}
        for table in META_TABLES
    }
    return {"streams": streams, "meta": meta}


async def fill(store: LogStore) -> None:
    """Two runs of real apps (with effects streams), plus hand-made streams."""
    assert (await Runtime(store, basic, batch_size=7).run("r1", {"count": 60})).ok
    assert (await Runtime(store, effects).run("r2", {"count": 30, "rate": 0.5})).ok
    for first in range(0, 250, 25):
        await store.append(
            "loose/odd", first, [{"n": n, "nested": {"l": [n]}} for n in range(first, first + 25)]
        )
    await store.append("loose/bytes", 0, [b"\x00\x01", "text", 3, None, [1, [2]]])
    await store.seal("loose/bytes", epoch=4)


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


# --------------------------------------------------------------------- copy_store


@pytest.mark.parametrize("source", ["memory", "sqlite"])
async def test_a_copy_into_sqlite_equals_the_source_item_for_item(
    source: str, tmp_path: Path
) -> None:
    src = open_store("memory://" if source == "memory" else sqlite_url(tmp_path, "src.db"))
    dest = open_store(sqlite_url(tmp_path, "dest.db"))
    await fill(src)
    stats = await copy_store(src, dest)
    assert await snapshot(dest) == await snapshot(src)
    assert stats.items == sum(i.head for i in await src.streams())
    assert stats.sealed == sum(1 for i in await src.streams() if i.sealed)
    again = await copy_store(src, dest)
    assert (again.items, again.segments, again.sealed, again.metadata) == (0, 0, 0, 0)
    await src.close()
    await dest.close()


async def test_segments_are_copied_as_stored_without_re_batching(tmp_path: Path) -> None:
    async with open_store("memory://") as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        for first in range(0, 1000, 100):
            await src.append("s", first, list(range(first, first + 100)))
        stats = await copy_store(src, dest)
    assert (stats.items, stats.segments) == (1000, 10)
    db = sqlite3.connect(tmp_path / "d.db")
    assert db.execute("SELECT count(*), min(count), max(count) FROM segments").fetchone() == (
        10,
        100,
        100,
    )
    db.close()


async def test_an_interrupted_copy_resumes_where_it_stopped(tmp_path: Path) -> None:
    src = open_store("memory://")
    await fill(src)
    dest = open_store(sqlite_url(tmp_path, "dest.db"))
    total = sum(i.head for i in await src.streams())

    class Interrupted(Exception):
        pass

    def interrupt(copied: int, _: int) -> None:
        if copied > total // 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await copy_store(src, dest, progress=interrupt)
    await dest.close()
    dest = open_store(sqlite_url(tmp_path, "dest.db"))  # as a new process would
    partial = sum(i.head for i in await dest.streams())
    assert 0 < partial < total
    stats = await copy_store(src, dest)
    assert stats.items == total - partial
    assert await snapshot(dest) == await snapshot(src)
    await src.close()
    await dest.close()


async def test_a_destination_head_inside_a_source_segment_appends_just_the_tail(
    tmp_path: Path,
) -> None:
    async with open_store("memory://") as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        await src.append("s", 0, list(range(10)))
        await src.append("s", 10, list(range(10, 20)))
        await dest.append("s", 0, list(range(4)))
        stats = await copy_store(src, dest)
        assert stats.items == 16
        assert [i async for _, i in dest.read("s")] == list(range(20))


async def test_a_destination_that_is_not_a_copy_is_refused(tmp_path: Path) -> None:
    async with open_store("memory://") as src, open_store("memory://") as dest:
        await src.append("s", 0, [1])
        await dest.append("s", 0, [1, 2])
        with pytest.raises(Exception, match="not a copy of this source"):
            await copy_store(src, dest)


async def test_exporting_one_run_leaves_the_other_runs_out(tmp_path: Path) -> None:
    async with open_store("memory://") as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        await fill(src)
        await copy_store(src, dest, run="r2")
        copied = await snapshot(dest)
        assert copied == await snapshot(src, prefix="r2/") | {"meta": copied["meta"]}
        assert all(name.startswith("r2/") for name in copied["streams"])
        assert any(name.endswith("#effects") for name in copied["streams"])
        assert list(copied["meta"]["runs"]) == ["r2"]
        for table in ("executions", "checkpoints", "leases"):
            assert copied["meta"][table], table
            assert all(key.startswith("r2/") for key in copied["meta"][table]), table
        source_meta = (await snapshot(src))["meta"]
        assert copied["meta"]["executions"] == {
            k: v for k, v in source_meta["executions"].items() if k.startswith("r2/")
        }


async def test_a_stream_glob_brings_the_effects_of_the_executions_it_selects(
    tmp_path: Path,
) -> None:
    async with open_store("memory://") as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        await fill(src)
        await copy_store(src, dest, streams="r2/orders-*")
        names = [i.name for i in await dest.streams()]
        assert names == ["r2/orders-0", "r2/orders-0#effects"]
        assert list((await snapshot(dest))["meta"]["executions"]) == ["r2/orders-0"]


async def test_follow_keeps_up_and_flushes_when_stopped(tmp_path: Path) -> None:
    async with open_store("memory://") as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        stop = asyncio.Event()
        task = asyncio.ensure_future(follow(src, dest, poll=0.02, stop=stop))
        for first in range(0, 50, 5):
            await src.append("s", first, list(range(first, first + 5)))
            deadline = asyncio.get_running_loop().time() + 5
            while await dest.head("s") < first + 5:  # the lag is bounded by poll + a pass
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
        await src.append("s", 50, ["last"])
        await src.seal("s")
        stop.set()
        stats = await asyncio.wait_for(task, 5)
        assert isinstance(stats, CopyStats)
        assert stats.items == 51
        assert stats.passes >= 2
        assert [i async for _, i in dest.read("s")] == [*range(50), "last"]
        assert (await dest.info("s")).sealed


@pytest.mark.ignite
async def test_an_ignite_store_exports_into_sqlite_item_for_item(tmp_path: Path) -> None:
    node = os.environ.get("PERPER_TEST_IGNITE")
    if not node:
        pytest.fail("PERPER_TEST_IGNITE is not set: start a node and export its ignite:// URL")
    url = f"{node}?namespace=mirror-{uuid.uuid4().hex}"
    async with open_store(url) as src, open_store(sqlite_url(tmp_path, "d.db")) as dest:
        await fill(src)
        stats = await copy_store(src, dest)
        assert stats.items == sum(i.head for i in await src.streams())
        assert await snapshot(dest) == await snapshot(src)
    result = run_cli("export", url, str(tmp_path / "cli.sqlite"), "--run", "r1")
    assert result.returncode == 0, result.stderr
    async with open_store(sqlite_url(tmp_path, "cli.sqlite")) as exported:
        assert [i.name for i in await exported.streams()] == [
            "r1/consumer-2",
            "r1/generator-0",
            "r1/processor-1",
        ]


# ---------------------------------------------------------------------------- CLI


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip


async def make_source(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path, "src.db")
    async with open_store(url) as src:
        await fill(src)
    return url


async def test_the_export_command_copies_a_run_into_a_file_perper_opens(tmp_path: Path) -> None:
    url = await make_source(tmp_path)
    result = run_cli("export", url, str(tmp_path / "out.sqlite"), "--run", "r1")
    assert result.returncode == 0, result.stderr
    assert "exported 80 items" in result.stderr
    listed = run_cli("streams", "ls", "--store", sqlite_url(tmp_path, "out.sqlite"), "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["items"], r["status"]) for r in rows] == [
        ("r1/generator-0", 60, "done"),
        ("r1/processor-1", 20, "done"),
        ("r1/consumer-2", 0, "done"),
    ]
    again = run_cli("export", url, str(tmp_path / "out.sqlite"), "--run", "r1")
    assert again.returncode == 0, again.stderr
    assert "exported 0 items" in again.stderr


async def test_flat_tables_are_queryable_with_plain_sqlite3(tmp_path: Path) -> None:
    url = await make_source(tmp_path)
    out = tmp_path / "flat.sqlite"
    result = run_cli("export", url, str(out), "--flat")
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(out)
    assert db.execute('SELECT seq, value FROM "r1/generator-0" ORDER BY seq LIMIT 2').fetchall() == [
        (0, 0), (1, 1)
    ]  # fmt: skip
    assert db.execute('SELECT count(*) FROM "r1/generator-0"').fetchone() == (60,)
    assert db.execute('SELECT value FROM "r1/processor-1" WHERE seq = 1').fetchone() == (
        "[3, 4, 5]",
    )
    odd = db.execute('SELECT seq, n, nested FROM "loose/odd" WHERE n >= 248').fetchall()
    assert odd == [(248, 248, '{"l": [248]}'), (249, 249, '{"l": [249]}')]
    assert db.execute('SELECT value FROM "loose/bytes" ORDER BY seq').fetchall() == [
        (b"\x00\x01",), ("text",), (3,), (None,), ("[1, [2]]",)
    ]  # fmt: skip
    orders = db.execute(
        'SELECT "order", id, amount, at FROM "r2/orders-0" WHERE seq = 0'
    ).fetchone()
    assert orders[0] == 0
    assert len(orders[1]) == 36
    assert isinstance(orders[2], float)
    db.close()
    # the file is still a perper log, and re-exporting adds nothing twice
    again = run_cli("export", url, str(out), "--flat")
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(out)
    assert db.execute('SELECT count(*) FROM "r1/generator-0"').fetchone() == (60,)
    db.close()


def test_a_bad_source_url_exits_2_naming_it_and_the_fix(tmp_path: Path) -> None:
    result = run_cli("export", "postgres://x", str(tmp_path / "o.sqlite"))
    assert result.returncode == 2
    assert "postgres://x" in result.stderr
    assert "sqlite:///path.db" in result.stderr


def test_a_missing_source_file_exits_2_instead_of_creating_it(tmp_path: Path) -> None:
    result = run_cli("export", sqlite_url(tmp_path, "nope.db"), str(tmp_path / "o.sqlite"))
    assert result.returncode == 2
    assert "there is no file" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_a_destination_url_for_export_exits_2_pointing_at_mirror(tmp_path: Path) -> None:
    result = run_cli("export", "memory://", "ignite://127.0.0.1:10800")
    assert result.returncode == 2
    assert "perper mirror" in result.stderr


def test_an_unreachable_ignite_source_exits_2_naming_the_address(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_cli("export", f"ignite://127.0.0.1:{port}?retry=1", str(tmp_path / "o.sqlite"))
    assert result.returncode == 2
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_the_mirror_command_copies_between_stores(tmp_path: Path) -> None:
    url = await make_source(tmp_path)
    result = run_cli("mirror", url, sqlite_url(tmp_path, "m.db"), "--streams", "loose/*")
    assert result.returncode == 0, result.stderr
    async with open_store(sqlite_url(tmp_path, "m.db")) as copied:
        assert [i.name for i in await copied.streams()] == ["loose/bytes", "loose/odd"]
    same = run_cli("mirror", url, url)
    assert same.returncode == 2
    assert "same store" in same.stderr


async def test_mirror_follow_stops_cleanly_on_sigterm_after_a_final_flush(tmp_path: Path) -> None:
    src_url, dest_url = sqlite_url(tmp_path, "src.db"), sqlite_url(tmp_path, "dest.db")
    async with open_store(src_url) as src:
        await src.append("s", 0, [0])
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "perper.cli", "mirror", src_url, dest_url, "--follow",
        "--poll", "0.05", cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with open_store(src_url) as src, open_store(dest_url) as dest:
        deadline = time.monotonic() + 30
        while await dest.head("s") < 1:
            assert time.monotonic() < deadline, "the follower never copied the first item"
            await asyncio.sleep(0.05)
        await src.append("s", 1, [1, 2])
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        assert [i async for _, i in dest.read("s")] == [0, 1, 2]
    assert b"mirrored 3 items" in stderr
