"""The LogStore contract, run against every store kind."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from perper import codec
from perper.errors import (
    ConflictError,
    EncodeError,
    FencedError,
    GapError,
    SealedError,
    StoreError,
)
from perper.store import LogStore


async def items_of(store: LogStore, stream: str, **kwargs: int) -> list[tuple[int, object]]:
    return [pair async for pair in store.read(stream, **kwargs)]


async def test_a_stream_never_written_is_empty(store: LogStore) -> None:
    assert await store.head("nothing") == 0
    assert await items_of(store, "nothing") == []
    assert (await store.info("nothing")).sealed is False


async def test_appended_items_read_back_in_order(store: LogStore) -> None:
    assert await store.append("s", 0, [{"value": 0}, {"value": 1}]) == 2
    assert await store.append("s", 2, [{"value": 2}]) == 3
    assert await store.head("s") == 3
    assert await items_of(store, "s") == [(0, {"value": 0}), (1, {"value": 1}), (2, {"value": 2})]


async def test_reappending_equal_items_is_a_no_op(store: LogStore) -> None:
    await store.append("s", 0, ["a", "b", "c"])
    assert await store.append("s", 0, ["a", "b", "c"]) == 3
    assert await store.append("s", 1, ["b"]) == 3
    assert await items_of(store, "s") == [(0, "a"), (1, "b"), (2, "c")]


async def test_an_append_overlapping_the_head_writes_only_the_new_tail(store: LogStore) -> None:
    await store.append("s", 0, [1, 2, 3])
    assert await store.append("s", 1, [2, 3, 4, 5]) == 5
    assert [item for _, item in await items_of(store, "s")] == [1, 2, 3, 4, 5]


async def test_a_different_item_at_an_existing_seq_raises_conflict_naming_both(
    store: LogStore,
) -> None:
    await store.append("s", 0, [{"v": 1}, {"v": 2}])
    with pytest.raises(ConflictError) as caught:
        await store.append("s", 0, [{"v": 1}, {"v": 99}, {"v": 3}])
    error = caught.value
    assert (error.stream, error.seq, error.stored, error.new) == ("s", 1, {"v": 2}, {"v": 99})
    assert "'s'" in str(error) and "seq 1" in str(error)
    # nothing of the refused batch was written, not even the part past the head
    assert await store.head("s") == 2


async def test_re_appending_stored_items_one_by_one_reads_each_segment_once(
    store: LogStore,
) -> None:
    # As a recovering writer does when it re-yields what it had stored, in small flushes.
    await store.append("s", 0, list(range(100)))
    await store.append("s", 100, list(range(100, 150)))
    reads: list[tuple[object, ...]] = []
    real = store.scan_segments

    def counted(*args: object) -> object:
        reads.append(args)
        return real(*args)  # type: ignore[arg-type]

    store.scan_segments = counted  # type: ignore[assignment, method-assign]
    for seq in range(150):
        assert await store.append("s", seq, [seq]) == 150
    assert len(reads) == 2  # one per stored segment
    with pytest.raises(ConflictError) as caught:  # from the remembered segment, too
        await store.append("s", 120, [120, 999])
    assert (caught.value.seq, caught.value.stored, caught.value.new) == (121, 121, 999)
    assert await store.append("s", 98, [98, 99, 100, 101]) == 150  # across segments
    assert await store.append("s", 149, [149, 150]) == 151  # the stored part, then a new one
    assert [item async for _, item in store.read("s", start=148)] == [148, 149, 150]


async def test_a_tuple_reappended_over_the_list_it_encodes_to_is_equal(store: LogStore) -> None:
    await store.append("s", 0, [[1, 2]])
    await store.append("s", 0, [(1, 2)])
    assert await items_of(store, "s") == [(0, [1, 2])]


async def test_an_append_beyond_the_head_raises_gap_error(store: LogStore) -> None:
    await store.append("s", 0, [1])
    with pytest.raises(GapError) as caught:
        await store.append("s", 3, [4])
    assert (caught.value.seq, caught.value.head) == (3, 1)
    assert "next append must start at seq 1" in str(caught.value)
    with pytest.raises(GapError):
        await store.append("s", -1, [0])


async def test_ranges_cut_across_segments(store: LogStore) -> None:
    for first in range(0, 100, 10):
        await store.append("s", first, list(range(first, first + 10)))
    assert [i for _, i in await items_of(store, "s", start=15, stop=37)] == list(range(15, 37))
    assert [i for _, i in await items_of(store, "s", start=95)] == list(range(95, 100))
    assert await items_of(store, "s", start=100) == []
    assert await items_of(store, "s", start=5, stop=5) == []
    batches = [b async for b in store.read_batches("s", start=18, stop=31)]
    assert [first for first, _ in batches] == [18, 20, 30]
    assert sum(len(items) for _, items in batches) == 13


async def test_many_segments_read_back_whole(store: LogStore) -> None:
    for first in range(0, 3000, 7):
        await store.append("s", first, list(range(first, min(first + 7, 3000))))
    assert [i for _, i in await items_of(store, "s")] == list(range(3000))


async def test_an_unencodable_item_raises_and_writes_nothing(store: LogStore) -> None:
    with pytest.raises(EncodeError) as caught:
        await store.append("s", 0, [1, 2, {"bad": {1, 2}}])
    assert caught.value.index == 2
    assert caught.value.type_name == "set"
    assert "item['bad']" in str(caught.value)
    assert await store.head("s") == 0


@codec.register
@dataclass(frozen=True)
class Order:
    id: int
    lines: list[str]


async def test_registered_dataclasses_round_trip(store: LogStore) -> None:
    await store.append("s", 0, [Order(1, ["a", "b"])])
    assert await items_of(store, "s") == [(0, Order(1, ["a", "b"]))]


async def test_wait_returns_at_once_when_the_item_exists(store: LogStore) -> None:
    await store.append("s", 0, [1])
    assert await store.wait("s", 0, timeout=0) is True


async def test_wait_times_out_when_nothing_arrives(store: LogStore) -> None:
    assert await store.wait("s", 0, timeout=0.05) is False


async def test_wait_wakes_when_another_task_appends(store: LogStore) -> None:
    waiter = asyncio.ensure_future(store.wait("s", 1, timeout=10))
    await store.append("s", 0, [0])
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await store.append("s", 1, [1])
    assert await asyncio.wait_for(waiter, 5) is True


async def test_wait_wakes_when_the_stream_is_sealed(store: LogStore) -> None:
    waiter = asyncio.ensure_future(store.wait("s", 0, timeout=10))
    await asyncio.sleep(0)
    await store.seal("s")
    assert await asyncio.wait_for(waiter, 5) is True


async def test_a_sealed_stream_refuses_new_items_but_accepts_equal_ones(store: LogStore) -> None:
    await store.append("s", 0, [1, 2])
    await store.seal("s")
    assert (await store.info("s")).sealed
    assert await store.append("s", 0, [1, 2]) == 2
    with pytest.raises(SealedError):
        await store.append("s", 2, [3])


async def test_streams_lists_by_prefix(store: LogStore) -> None:
    await store.append("r1/a-0", 0, [1])
    await store.append("r1/b-1", 0, [1, 2])
    await store.append("r2/a-0", 0, [1])
    listed = await store.streams(prefix="r1/")
    assert [(s.name, s.head) for s in listed] == [("r1/a-0", 1), ("r1/b-1", 2)]


async def test_compare_and_set_creates_once_and_updates_by_version(store: LogStore) -> None:
    assert await store.meta_cas("leases", "e1", {"owner": "w1"}, version=0) == 1
    assert await store.meta_cas("leases", "e1", {"owner": "w2"}, version=0) is None
    assert await store.meta_cas("leases", "e1", {"owner": "w2"}, version=1) == 2
    assert await store.meta_cas("leases", "e1", {"owner": "w3"}, version=1) is None
    entry = await store.meta_get("leases", "e1")
    assert entry is not None
    assert (entry.version, entry.value) == (2, {"owner": "w2"})
    assert await store.meta_get("leases", "missing") is None


async def test_meta_scan_returns_sorted_keys_by_prefix(store: LogStore) -> None:
    for key in ["r1/b", "r1/a", "r2/a"]:
        await store.meta_put("executions", key, {"key": key})
    scanned = await store.meta_scan("executions", prefix="r1/")
    assert [key for key, _ in scanned] == ["r1/a", "r1/b"]
    assert scanned[0][1].value == {"key": "r1/a"}


async def test_prefixes_match_across_path_segments(store: LogStore) -> None:
    keys = ["a", "ab", "ab/1", "abc/2", "b/3", "r/x/y"]
    for key in keys:
        await store.meta_put("executions", key, {"key": key})
        await store.append(key, 0, [key])
    for prefix in ["", "a", "ab", "ab/", "abc", "b/", "r/x", "r/x/", "zz"]:
        expected = sorted(key for key in keys if key.startswith(prefix))
        assert [key for key, _ in await store.meta_scan("executions", prefix=prefix)] == expected
        assert [s.name for s in await store.streams(prefix=prefix)] == expected


async def test_an_unknown_metadata_table_is_refused(store: LogStore) -> None:
    with pytest.raises(StoreError, match="unknown metadata table"):
        await store.meta_get("nope", "k")


async def test_concurrent_writers_at_the_same_seq_never_duplicate(store: LogStore) -> None:
    results = await asyncio.gather(
        store.append("s", 0, [1, 2]), store.append("s", 0, [1, 2]), return_exceptions=True
    )
    assert results == [2, 2]
    assert await items_of(store, "s") == [(0, 1), (1, 2)]


async def test_a_writer_with_an_older_epoch_is_fenced(store: LogStore) -> None:
    await store.append("s", 0, [1, 2], epoch=1)
    await store.append("s", 2, [3], epoch=2)
    assert (await store.info("s")).epoch == 2
    with pytest.raises(FencedError) as caught:
        await store.append("s", 3, [4], epoch=1)
    assert (caught.value.epoch, caught.value.current) == (1, 2)
    assert "lease epoch 1 refused" in str(caught.value)
    # re-appending what is stored is still a harmless no-op for the stale writer
    assert await store.append("s", 0, [1, 2, 3], epoch=1) == 3
    with pytest.raises(FencedError):
        await store.seal("s", epoch=1)
    await store.seal("s", epoch=2)
    assert await store.head("s") == 3


async def test_the_calls_read_as_the_design_writes_them(store: LogStore) -> None:
    await store.append("s", 0, ["a", "b", "c", "d"])
    assert [pair async for pair in store.read("s", 1, 3)] == [(1, "b"), (2, "c")]
    assert await store.wait("s", 3, 0.01) is True
    assert await store.wait("s", 4, 0.01) is False
