"""Segments are bounded by encoded bytes on every store; one item above a store's limit
gets a clear error naming the limit; a failed first write to a new stream does not wedge
the stream."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from perper.errors import StoreError, TooLargeError
from perper.store import LogStore
from perper.store.sqlite import SQLiteStore


async def test_a_batch_larger_than_a_segment_is_split_and_reads_back_whole(
    store: LogStore,
) -> None:
    items = [{"blob": "x" * 20_000, "i": i} for i in range(400)]  # ~8 MB encoded
    assert await store.append("s", 0, items) == 400
    sizes = [(count, len(data)) async for _, count, data in store.segments("s")]
    assert len(sizes) >= 2
    assert all(size <= store.max_segment_bytes for _, size in sizes)
    assert sum(count for count, _ in sizes) == 400
    assert [item async for _, item in store.read("s")] == items
    assert await store.append("s", 0, items) == 400  # re-appending compares, writes nothing
    assert len([s async for s in store.segments("s")]) == len(sizes)


async def test_one_item_above_the_store_limit_is_refused_naming_the_limit(
    store: LogStore,
) -> None:
    store.max_item_bytes = 10_000
    await store.append("s", 0, ["small"])
    with pytest.raises(TooLargeError) as caught:
        await store.append("s", 1, ["ok", "y" * 20_000])
    message = str(caught.value)
    assert "seq 2" in message and "'s'" in message and "10,000-byte limit" in message
    assert store.url in message
    assert await store.head("s") == 1  # nothing of the refused batch is written
    assert [item async for _, item in store.read("s")] == ["small"]


def test_sqlite_and_ignite_limits_are_below_what_their_backends_refuse() -> None:
    from perper.store.ignite import IgniteStore

    assert IgniteStore.max_item_bytes < 16 * 1024 * 1024  # Ignite's record capacity
    assert IgniteStore.max_segment_bytes < IgniteStore.max_item_bytes


async def test_sqlite_limit_is_sqlites_largest_value(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "log.db") as store:
        limit = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        assert 0 < store.max_item_bytes < limit


async def test_a_failed_first_write_to_a_new_stream_does_not_wedge_it(tmp_path: Path) -> None:
    # A full disk (here: a page limit) fails the first write; once space is back the
    # next append must succeed, not loop forever on a stream id the rollback removed.
    async with SQLiteStore(tmp_path / "log.db") as store:
        await store.append("other", 0, [1])
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(StoreError, match="full"):
            await store.append("new", 0, ["z" * 100_000])
        store._db.execute("PRAGMA max_page_count = 1073741823")
        head = await asyncio.wait_for(store.append("new", 0, ["z" * 100_000]), timeout=10)
        assert head == 1
        assert [item async for _, item in store.read("new")] == ["z" * 100_000]
