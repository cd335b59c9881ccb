"""Corruption is named at the store, never used: a changed byte in a segment, a missing
segment and a head beyond the stored items each raise FormatError naming the store, the
stream and the seqs, on every read path (read, read_batches, segments, append's compare)."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from perper.errors import FormatError
from perper.store import LogStore
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore


async def fill(store: LogStore) -> None:
    """Three segments of 1000 items: seqs 0..999, 1000..1999, 2000..2999."""
    for first in (0, 1000, 2000):
        await store.append("r/s", first, [{"value": i} for i in range(first, first + 1000)])


def _sqlite(store: LogStore) -> sqlite3.Connection:
    assert isinstance(store, SQLiteStore)
    return sqlite3.connect(store.path, isolation_level=None)


async def flip_byte(store: LogStore) -> None:
    """Change one byte inside the items of the segment at seq 1000."""
    if isinstance(store, MemoryStore):
        stream = store._streams["r/s"]
        count, data = stream.data[1]
        stream.data[1] = (count, data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:])
    elif isinstance(store, SQLiteStore):
        db = _sqlite(store)
        (data,) = db.execute("SELECT data FROM segments WHERE first_seq = 1000").fetchone()
        changed = data[:-3] + bytes([data[-3] ^ 0x01]) + data[-2:]
        db.execute("UPDATE segments SET data = ? WHERE first_seq = 1000", (changed,))
        db.close()
    else:
        conn = store.io.conn  # type: ignore[attr-defined]
        key = store.layout.segment("r/s", 1)  # type: ignore[attr-defined]
        value = await conn.segments.get(key)
        await conn.segments.put(key, value[:-3] + bytes([value[-3] ^ 0x01]) + value[-2:])
        store._cache.entries.clear()  # type: ignore[attr-defined]


async def delete_segment(store: LogStore) -> None:
    """Delete the segment at seq 1000."""
    if isinstance(store, MemoryStore):
        stream = store._streams["r/s"]
        del stream.firsts[1], stream.data[1]
    elif isinstance(store, SQLiteStore):
        db = _sqlite(store)
        db.execute("DELETE FROM segments WHERE first_seq = 1000")
        db.close()
    else:
        conn = store.io.conn  # type: ignore[attr-defined]
        await conn.segments.remove_key(store.layout.segment("r/s", 1))  # type: ignore[attr-defined]
        store._cache.entries.clear()  # type: ignore[attr-defined]


async def bump_head(store: LogStore) -> None:
    """Say the stream holds five items more than are stored."""
    if isinstance(store, MemoryStore):
        store._streams["r/s"].head += 5
    elif isinstance(store, SQLiteStore):
        db = _sqlite(store)
        db.execute("UPDATE streams SET head = head + 5")
        db.close()
    else:
        raise AssertionError(f"no head to bump in {store!r}")


async def read_all(store: LogStore, start: int = 0) -> list[Any]:
    return [item async for _, item in store.read("r/s", start)]


async def read_batches(store: LogStore, start: int = 0) -> list[Any]:
    return [b async for b in store.read_batches("r/s", start, await store.head("r/s"))]


async def re_append(store: LogStore, start: int = 0) -> Any:
    return await store.append("r/s", start, [{"value": i} for i in range(start, 3000)])


READS: dict[str, Callable[[LogStore, int], Awaitable[Any]]] = {
    "read": read_all,
    "read_batches": read_batches,
    "append": re_append,
}


@pytest.mark.parametrize("how", sorted(READS))
@pytest.mark.parametrize("start", [0, 1000, 1500])
async def test_a_changed_byte_in_a_segment_is_reported_with_stream_and_seqs(
    store: LogStore, how: str, start: int
) -> None:
    await fill(store)
    await flip_byte(store)
    with pytest.raises(FormatError) as caught:
        await READS[how](store, start)
    message = str(caught.value)
    assert "'r/s'" in message and "seq 1000..1999" in message and "checksum" in message
    assert store.url in message


@pytest.mark.parametrize("how", sorted(READS))
@pytest.mark.parametrize("start", [0, 1000, 1500])
async def test_a_missing_segment_is_reported_as_a_gap_never_skipped(
    store: LogStore, how: str, start: int
) -> None:
    await fill(store)
    await delete_segment(store)
    with pytest.raises(FormatError) as caught:
        await READS[how](store, start)
    message = str(caught.value)
    assert "'r/s'" in message and f"seq {max(start, 1000)}" in message and "corrupt" in message


# An Ignite stream's head is where its segments end: it has no separate head to bump.
@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
@pytest.mark.parametrize("start", [0, 2999, 3000])
async def test_a_head_beyond_the_stored_items_is_reported_not_waited_on(
    store: LogStore, start: int
) -> None:
    await fill(store)
    await bump_head(store)
    with pytest.raises(FormatError) as caught:
        await read_all(store, start)
    message = str(caught.value)
    assert "'r/s'" in message and "head 3005" in message and "seq 3000" in message
    with pytest.raises(FormatError):
        await read_batches(store, start)


async def test_a_reader_of_a_live_stream_still_sees_items_appended_during_its_read(
    store: LogStore,
) -> None:
    # The head check must not mistake a concurrent append for corruption.
    await store.append("r/s", 0, [0, 1])
    seen = []
    async for seq, item in store.read("r/s"):
        seen.append(item)
        if seq == 1:
            await store.append("r/s", 2, [2])
    assert seen[:2] == [0, 1]
    assert [item async for _, item in store.read("r/s", 2)] == [2]


@pytest.mark.ignite
@pytest.mark.parametrize("store_kind", ["ignite"])  # its head is found by probing segment keys
async def test_a_fresh_ignite_reader_reports_a_deleted_segment_instead_of_a_short_stream(
    store_kind: str, tmp_path: Any
) -> None:
    from perper.store import open_store
    from tests.conftest import store_url

    url = store_url(store_kind, tmp_path)
    async with open_store(url) as writer:
        await fill(writer)
        await delete_segment(writer)
    async with open_store(url) as reader:
        with pytest.raises(FormatError, match=r"segment 1 of stream 'r/s' .*seq 1000"):
            await reader.info("r/s")
        with pytest.raises(FormatError, match="'r/s'"):
            await read_all(reader)
