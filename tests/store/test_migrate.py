"""A format-2 log (before segment checksums) migrates into a format-3 file item for item."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from perper.errors import FormatError
from perper.store.migrate import migrate_sqlite
from perper.store.sqlite import SQLiteStore
from tests.conftest import ROOT
from tests.query.test_store_query import ORDERS, format_4_indexed_log


def format_2_log(tmp_path: Path) -> Path:
    """fixtures/basic-clean.db as it was recorded in format 2 (before segment checksums)."""
    path = tmp_path / "v2.db"
    shutil.copy(ROOT / "fixtures" / "basic-clean-format2.db", path)
    return path


async def test_a_format_2_log_is_refused_then_migrates_to_an_equal_format_3_log(
    tmp_path: Path,
) -> None:
    old = format_2_log(tmp_path)
    with pytest.raises(FormatError, match="format 2.*python -m perper.store.migrate"):
        SQLiteStore(old, read_only=True)
    new = tmp_path / "v3.db"
    assert await migrate_sqlite(old, new) == 1334
    clean = ROOT / "fixtures" / "basic-clean.db"
    async with (
        SQLiteStore(new, read_only=True) as migrated,
        SQLiteStore(clean, read_only=True) as fresh,
    ):
        for info in await fresh.streams():
            assert await migrated.info(info.name) == info
            assert [i async for i in migrated.read(info.name)] == [
                i async for i in fresh.read(info.name)
            ]
        for table in ("runs", "executions"):
            assert [(k, m.value) for k, m in await migrated.meta_scan(table)] == [
                (k, m.value) for k, m in await fresh.meta_scan(table)
            ]


async def test_a_format_3_log_migrates_to_format_5_with_the_same_items(tmp_path: Path) -> None:
    old = tmp_path / "v3.db"
    shutil.copy(ROOT / "fixtures" / "basic-clean.db", old)
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 3
    new = tmp_path / "v5.db"
    items = await migrate_sqlite(old, new)
    assert items > 0
    assert sqlite3.connect(new).execute("PRAGMA user_version").fetchone()[0] == 5
    async with (
        SQLiteStore(old, read_only=True) as before,
        SQLiteStore(new, read_only=True) as after,
    ):
        assert await after.streams() == await before.streams()
        for info in await before.streams():
            assert [i async for i in after.read(info.name)] == [
                i async for i in before.read(info.name)
            ]
        assert await after.indexes() == {}


async def test_a_format_4_indexed_log_migrates_to_format_5_with_its_index_rebuilt(
    tmp_path: Path,
) -> None:
    old, new = tmp_path / "v4.db", tmp_path / "v5.db"
    format_4_indexed_log(old)
    assert await migrate_sqlite(old, new) == 10
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 4
    assert sqlite3.connect(new).execute("PRAGMA user_version").fetchone()[0] == 5
    async with SQLiteStore(new, read_only=True) as after:
        assert [seq async for seq, _ in after.query(ORDERS, "user = ?", [1])] == [1, 6]
        assert await after.indexes() == {ORDERS: (("user", "int"),)}


async def test_migrating_a_current_log_or_into_an_existing_file_is_refused(
    tmp_path: Path,
) -> None:
    current = tmp_path / "v4.db"
    await migrate_sqlite(ROOT / "fixtures" / "basic-clean.db", current)
    with pytest.raises(FormatError, match="nothing to migrate"):
        await migrate_sqlite(current, tmp_path / "out.db")
    assert not (tmp_path / "out.db").exists()
    with pytest.raises(Exception, match="exists"):
        await migrate_sqlite(current, current)


def test_the_migrate_command_exits_0_then_2_for_an_existing_target(tmp_path: Path) -> None:
    old = format_2_log(tmp_path)
    new = tmp_path / "new.db"
    command = [sys.executable, "-m", "perper.store.migrate", str(old), str(new)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert "migrated 1334 items" in done.stderr
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
