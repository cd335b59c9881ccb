"""Trims and deletes of indexed streams: index rows go with their items, on every backend.

The ``store`` fixture runs each store-level test on memory, SQLite and (with
``PERPER_TEST_IGNITE``) a real Ignite node.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from perper.errors import ConfigError, TrimmedError
from perper.runtime.destroy import destroy_stream
from perper.store import LogStore, open_store
from perper.store.ignite import IgniteStore
from perper.store.index import sqlite_table
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore

STREAM = "r/orders-0"


def order(seq: int) -> dict[str, Any]:
    return {"user": seq % 3, "amount": float(seq)}


async def three_segments(store: LogStore, stream: str = STREAM) -> None:
    """Seqs 0..29 in segments of 10, indexed on user (seq % 3)."""
    await store.declare_index(stream, {"user": int, "amount": float})
    for first in (0, 10, 20):
        await store.append(stream, first, [order(seq) for seq in range(first, first + 10)])


async def matches(store: LogStore, where: str, params: list[Any], **options: Any) -> list[int]:
    rows = [(seq, item) async for seq, item in store.query(STREAM, where, params, **options)]
    assert all(item == order(seq) for seq, item in rows)
    return [seq for seq, _ in rows]


async def index_rows(store: LogStore, stream: str = STREAM) -> list[int]:
    """The seqs of the index rows the backend holds for ``stream`` (below its filters)."""
    if isinstance(store, IgniteStore):
        table = store.indexing.table(stream)
        rows = await store.indexing.sql("test", f"SELECT seq FROM {table} ORDER BY seq")
        return [int(row[0]) for row in rows]
    if isinstance(store, MemoryStore):
        assert store._index_db is not None
        number = store._specs[stream][1]
        db = store._index_db
    else:
        assert isinstance(store, SQLiteStore)
        db = store._db
        row = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
        number = row[0]
    return [r[0] for r in db.execute(f"SELECT seq FROM {sqlite_table(number)} ORDER BY seq")]


async def test_a_trim_deletes_the_index_rows_of_the_deleted_segments(store: LogStore) -> None:
    await three_segments(store)
    if isinstance(store, IgniteStore):
        await matches(store, "1", [])  # Ignite derives rows up to what a query asks for
    assert await index_rows(store) == list(range(30))
    assert await store.trim(STREAM, 20) == 20
    assert await index_rows(store) == list(range(20, 30))
    assert await matches(store, "user = ?", [1]) == [22, 25, 28]
    assert await matches(store, "user = ?", [1], order_by="amount DESC", limit=2) == [28, 25]


async def test_a_query_from_a_trimmed_start_raises_trimmed_naming_the_first_stored_seq(
    store: LogStore,
) -> None:
    await three_segments(store)
    await store.trim(STREAM, 10)
    assert await matches(store, "user = ?", [0], start=10) == [12, 15, 18, 21, 24, 27]
    with pytest.raises(TrimmedError) as caught:
        await matches(store, "user = ?", [0], start=0)
    assert (caught.value.stream, caught.value.position, caught.value.first) == (STREAM, 0, 10)


async def test_a_query_from_a_start_above_the_first_stored_seq_answers_from_there(
    store: LogStore,
) -> None:
    await three_segments(store)
    assert await matches(store, "user = ?", [0], start=14) == [15, 18, 21, 24, 27]
    assert await matches(store, "user = ? -- a comment", [0], start=14, limit=2) == [15, 18]
    assert await matches(store, "1", [], start=28, order_by="amount DESC") == [29, 28]


async def test_a_deleted_indexed_stream_loses_its_index_and_a_query_says_it_is_gone(
    store: LogStore,
) -> None:
    await three_segments(store)
    assert await matches(store, "user = ?", [2]) == list(range(2, 30, 3))
    await store.delete_stream(STREAM)
    assert await store.index_of(STREAM) is None
    assert STREAM not in await store.indexes(prefix="r/")
    with pytest.raises(ConfigError, match=r"no stream 'r/orders-0' .*destroyed"):
        await matches(store, "user = ?", [2])
    # Written again under the same name, it is a new stream: none of the old rows.
    await store.declare_index(STREAM, {"user": int, "amount": float})
    await store.append(STREAM, 0, [order(seq) for seq in range(100, 105)])
    rows = [(seq, item) async for seq, item in store.query(STREAM, "1", [])]
    assert rows == [(seq - 100, order(seq)) for seq in range(100, 105)]


async def test_destroy_stream_deletes_an_indexed_stream_and_its_index(store: LogStore) -> None:
    await three_segments(store)
    await destroy_stream(store, STREAM)
    assert (await store.info(STREAM)).head == 0
    assert await store.indexes() == {}
    with pytest.raises(ConfigError, match="no stream"):
        await matches(store, "user = ?", [2])


async def test_a_sqlite_trim_that_fails_midway_keeps_both_its_segments_and_their_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'log.db'}") as store:
        await three_segments(store)

        def crash(*_: Any, **__: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr("perper.store.sqlite.sqlite_delete_rows", crash)
        with pytest.raises(Exception, match="disk I/O"):
            await store.trim(STREAM, 20)
    async with open_store(f"sqlite:///{tmp_path / 'log.db'}") as store:
        assert await store.first_seq(STREAM) == 0
        assert await index_rows(store) == list(range(30))
        assert await matches(store, "user = ?", [1]) == list(range(1, 30, 3))
