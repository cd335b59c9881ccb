"""The retention primitives of the store contract: trim, first_seq, delete_stream."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from perper.errors import FormatError, StoreError, TrimmedError
from perper.store import LogStore, open_store
from perper.store.readonly import ReadOnlyStore
from tests.conftest import store_url


async def _three_segments(store: LogStore, stream: str = "s") -> None:
    await store.append(stream, 0, list(range(10)))
    await store.append(stream, 10, list(range(10, 20)))
    await store.append(stream, 20, list(range(20, 30)))


async def test_trim_deletes_the_whole_segments_below_and_keeps_the_head(store: LogStore) -> None:
    await _three_segments(store)
    assert await store.trim("s", 15) == 10  # the segment 10..19 holds 15: it stays
    assert await store.first_seq("s") == 10
    assert await store.head("s") == 30
    assert [seq for seq, _ in [x async for x in store.read("s", 10)]] == list(range(10, 30))


async def test_reading_a_trimmed_position_names_the_stream_position_and_first_seq(
    store: LogStore,
) -> None:
    await _three_segments(store)
    await store.trim("s", 20)
    with pytest.raises(TrimmedError) as caught:
        _ = [x async for x in store.read("s", 5)]
    assert (caught.value.stream, caught.value.position, caught.value.first) == ("s", 5, 20)
    assert "'s'" in str(caught.value) and "seq 5" in str(caught.value) and "20" in str(caught.value)
    with pytest.raises(TrimmedError):
        _ = [x async for x in store.read_batches("s", 0, 3)]


async def test_a_fully_trimmed_stream_raises_trimmed_not_corrupt(store: LogStore) -> None:
    await _three_segments(store)
    await store.seal("s")
    assert await store.trim("s", 30) == 30
    assert (await store.info("s")).sealed
    assert [x async for x in store.read("s", 30)] == []
    with pytest.raises(TrimmedError):
        _ = [x async for x in store.read("s")]


async def test_trimming_below_the_first_seq_changes_nothing(store: LogStore) -> None:
    await _three_segments(store)
    await store.trim("s", 20)
    assert await store.trim("s", 5) == 20
    assert await store.trim("missing", 5) == 0


async def test_a_recovering_writer_may_re_append_trimmed_items_and_go_on(store: LogStore) -> None:
    await _three_segments(store)
    await store.trim("s", 20)
    assert await store.append("s", 0, list(range(35))) == 35
    assert [item async for _, item in store.read("s", 20)] == list(range(20, 35))


async def test_re_appending_a_different_item_after_the_trim_still_conflicts(
    store: LogStore,
) -> None:
    from perper.errors import ConflictError

    await _three_segments(store)
    await store.trim("s", 10)
    with pytest.raises(ConflictError):
        await store.append("s", 0, [*range(15), "other"])


async def test_a_deleted_stream_reads_as_never_written(store: LogStore) -> None:
    await _three_segments(store)
    await _three_segments(store, "other")
    await store.seal("s")
    await store.trim("s", 10)
    await store.delete_stream("s")
    info = await store.info("s")
    assert (info.head, info.sealed, await store.first_seq("s")) == (0, False, 0)
    assert [x async for x in store.read("s")] == []
    assert [i.name for i in await store.streams()] == ["other"]
    assert await store.head("other") == 30


async def test_a_read_only_store_refuses_to_trim_or_delete(store: LogStore) -> None:
    await _three_segments(store)
    view = ReadOnlyStore(store, owned=False)
    with pytest.raises(StoreError, match="read-only"):
        await view.trim("s", 10)
    with pytest.raises(StoreError, match="read-only"):
        await view.delete_stream("s")
    assert await view.first_seq("s") == 0


async def test_a_sqlite_trim_survives_reopening(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    async with open_store(url) as store:
        await _three_segments(store)
        await store.trim("s", 20)
    async with open_store(url) as store:
        assert await store.first_seq("s") == 20
        with pytest.raises(TrimmedError):
            _ = [x async for x in store.read("s")]
        assert [item async for _, item in store.read("s", 20)] == list(range(20, 30))


async def test_a_missing_first_segment_without_a_trim_is_still_corruption(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    async with open_store(url) as store:
        await _three_segments(store)
    with sqlite3.connect(tmp_path / "store.db") as db:
        db.execute("DELETE FROM segments WHERE first_seq = 0")
    async with open_store(url) as store:
        with pytest.raises(FormatError, match="corrupt"):
            _ = [x async for x in store.read("s")]


async def test_a_sqlite_trim_and_a_reader_in_another_connection_agree(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    async with open_store(url) as writer, open_store(url) as reader:
        await _three_segments(writer)
        assert [x async for x in reader.read("s", 25)] != []
        await writer.trim("s", 20)
        assert await reader.first_seq("s") == 20
        with pytest.raises(TrimmedError):
            _ = [x async for x in reader.read("s", 0)]
