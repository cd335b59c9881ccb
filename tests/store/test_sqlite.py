"""What only the SQLite store promises: a real file, durable, versioned, checked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from perper.errors import (
    ConfigError,
    ConflictError,
    FencedError,
    FormatError,
    GapError,
    SealedError,
)
from perper.store import open_store
from perper.store.base import encode_segment
from perper.store.sqlite import (
    APPLICATION_ID,
    FORMAT_VERSION,
    PAGE_SIZE,
    WAL_CHECKPOINT_BYTES,
    SQLiteStore,
)


async def test_reopening_the_file_keeps_streams_and_metadata(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    async with open_store(url) as store:
        await store.append("s", 0, [{"a": 1}, {"a": 2}])
        await store.seal("s")
        await store.meta_put("runs", "r1", {"status": "done"})
    async with open_store(url) as store:
        assert [item async for _, item in store.read("s")] == [{"a": 1}, {"a": 2}]
        assert (await store.info("s")).sealed
        entry = await store.meta_get("runs", "r1")
        assert entry is not None and entry.value == {"status": "done"}


async def test_a_new_log_file_has_the_store_page_size_and_an_old_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    new, old = tmp_path / "new.db", tmp_path / "old.db"
    async with open_store(f"sqlite:///{new}") as store:
        await store.append("s", 0, list(range(5000)))
    async with open_store(f"sqlite:///{old}") as store:
        pass
    # The old file's pages are changed to 16 KiB (a file made with another page size).
    db = sqlite3.connect(old, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA page_size = 16384")
    db.execute("VACUUM")
    db.close()
    async with open_store(f"sqlite:///{old}") as store:
        await store.append("s", 0, list(range(5000)))
        assert [item async for _, item in store.read("s")] == list(range(5000))
    for path, size in ((new, PAGE_SIZE), (old, 16384)):
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA page_size").fetchone()[0] == size
        db.close()
    assert PAGE_SIZE == 4096


async def test_the_wal_stays_near_its_bound_in_bytes_with_large_pages(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA page_size = 16384")  # a file made with large pages
    db.execute("VACUUM")
    db.close()
    async with open_store(f"sqlite:///{path}") as store:
        for first in range(0, 12_000 * 100, 12_000):  # about 12 MB of segments
            await store.append("s", first, [b"x" * 100] * 12_000)
        wal = path.with_name(path.name + "-wal").stat().st_size
    # Auto-checkpointed at 1,000 pages of 16 KiB the WAL would pass 16 MB.
    assert wal < 2 * WAL_CHECKPOINT_BYTES


async def test_one_row_per_appended_batch_readable_by_plain_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SQLiteStore(path) as store:
        await store.append("s", 0, list(range(1000)))
        await store.append("s", 1000, list(range(1000, 1500)))
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT first_seq, count FROM segments JOIN streams ON streams.id = stream_id "
        "WHERE name = 's' ORDER BY first_seq"
    ).fetchall()
    assert rows == [(0, 1000), (1000, 500)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


async def test_a_segment_whose_data_disagrees_with_its_count_is_reported_corrupt(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    async with SQLiteStore(path) as store:
        await store.append("s", 0, [1, 2, 3])
    db = sqlite3.connect(path)
    # a two-item array, checksum intact, under count 3
    db.execute("UPDATE segments SET data = ?", (encode_segment([1, 2]),))
    db.commit()
    db.close()
    async with SQLiteStore(path) as store:
        with pytest.raises(FormatError, match="holds 2 items, not the 3"):
            [item async for _, item in store.read("s")]


async def test_a_file_of_another_format_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SQLiteStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
    db.close()
    with pytest.raises(
        FormatError, match=f"format {FORMAT_VERSION + 1}, this perper reads format {FORMAT_VERSION}"
    ):
        SQLiteStore(path)


async def test_a_corrupt_file_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(FormatError, match="not a SQLite database"):
        SQLiteStore(path)
    assert path.read_bytes().startswith(b"this is not")  # and left untouched


async def test_a_truncated_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SQLiteStore(path) as store:
        await store.append("s", 0, list(range(10_000)))
        await store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\x00" * 50 + data[150:4096])
    with pytest.raises(FormatError, match="corrupt"):
        SQLiteStore(path)


async def test_another_sqlite_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(FormatError, match="not a perper log"):
        SQLiteStore(path)


def test_a_sqlite_url_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="sqlite:///relative/path.db"):
        open_store("sqlite://")


def test_an_unknown_url_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown store URL 'postgres://x'"):
        open_store("postgres://x")


async def test_the_default_store_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERPER_STORE", f"sqlite:///{tmp_path / 'env.db'}")
    async with open_store() as store:
        await store.append("s", 0, [1])
    assert (tmp_path / "env.db").exists()


async def test_a_second_process_sees_appends_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with SQLiteStore(path) as reader, SQLiteStore(path) as writer:
        assert await reader.wait("s", 0, timeout=0.01) is False
        await writer.append("s", 0, [1])
        # the reader's connection learns of it without any in-process notification
        assert await reader.wait("s", 0, timeout=2) is True
        assert [i async for _, i in reader.read("s")] == [1]


async def test_an_append_at_its_own_last_head_checks_what_another_connection_wrote_since(
    tmp_path: Path,
) -> None:
    # Store a's last append ended at seq 2, so its next append there skips reading the
    # stream's info: what connection b wrote, sealed or fenced since must still count.
    url = f"sqlite:///{tmp_path / 'log.db'}"
    async with open_store(url) as a, open_store(url) as b:
        await a.append("s", 0, [1, 2], epoch=1)
        await b.append("s", 2, [3], epoch=1)
        assert await a.append("s", 2, [3, 4], epoch=1) == 4  # 3 compared, 4 written
        with pytest.raises(ConflictError) as conflict:
            await b.append("s", 3, [5], epoch=1)
        assert (conflict.value.seq, conflict.value.stored, conflict.value.new) == (3, 4, 5)
        await b.append("s", 4, [5], epoch=2)
        with pytest.raises(FencedError):
            await a.append("s", 5, [6], epoch=1)  # b wrote with a higher epoch
        assert await a.append("s", 5, [6], epoch=2) == 6
        await b.seal("s", epoch=2)
        with pytest.raises(SealedError):
            await a.append("s", 6, [7], epoch=2)  # at a's own last head, sealed since
        assert [item async for _, item in a.read("s")] == [1, 2, 3, 4, 5, 6]


async def test_an_append_at_its_own_last_head_after_the_stream_was_deleted_is_a_gap(
    tmp_path: Path,
) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'log.db'}") as store:
        await store.append("s", 0, [1, 2])
        await store.delete_stream("s")
        with pytest.raises(GapError):
            await store.append("s", 2, [3])
        assert await store.append("s", 0, [7]) == 1
        assert [item async for _, item in store.read("s")] == [7]
