"""MemoryStore's plain calls (LogStore.append_now, info_now, segment_now, write_waiter):
the same answers as the coroutines they stand in for, a refusal (None) wherever those
would do anything but the plain case, and off in a subclass that changes them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perper
from perper.errors import ConflictError, EncodeError, FormatError, StoreClosedError
from perper.runtime import Runtime
from perper.store.base import LogStore
from perper.store.memory import MemoryStore
from tests.conftest import EXAMPLES

basic = perper.load_app(EXAMPLES / "basic.py")


async def test_append_now_writes_where_its_last_append_ended_and_nowhere_else() -> None:
    store = MemoryStore()
    # No append through this store yet: it does not know the head.
    assert store.append_now("s", 0, [1]) is None
    assert await store.head("s") == 0
    assert await store.append("s", 0, [1, 2]) == 2
    assert store.append_now("s", 2, [3]) == 3
    assert store.append_now("s", 2, [3]) == 3  # the same segment again: nothing written
    assert store.append_now("s", 2, [4]) is None  # another item there: append compares it
    assert store.append_now("s", 5, [9]) is None  # a gap: append raises GapError
    assert store.append_now("s", 3, []) is None
    assert [item async for _, item in store.read("s")] == [1, 2, 3]


async def test_append_now_declines_sealed_fenced_unencodable_and_oversized_writes() -> None:
    store = MemoryStore()
    await store.append("s", 0, [1], epoch=2)
    assert store.append_now("s", 1, [2], epoch=1) is None  # a newer epoch wrote
    await store.seal("s", epoch=2)
    assert store.append_now("s", 1, [2], epoch=2) is None
    await store.append("t", 0, [1])
    assert store.append_now("t", 1, [object()]) is None
    with pytest.raises(EncodeError):
        await store.append("t", 1, [object()])
    store.max_segment_bytes = 16
    assert store.append_now("t", 1, ["x" * 64]) is None
    assert await store.append("t", 1, ["x" * 64]) == 2  # append splits or refuses it
    assert await store.head("t") == 2


async def test_append_now_after_a_delete_does_not_write_at_the_old_head() -> None:
    store = MemoryStore()
    await store.append("s", 0, [1, 2])
    await store.delete_stream("s")
    assert store.append_now("s", 2, [3]) is None
    assert await store.head("s") == 0


async def test_append_now_recognises_a_stored_segment_yielded_again_and_nothing_else() -> None:
    store = MemoryStore()
    await store.append("s", 0, [{"a": 1}, {"a": 2}])
    await store.append("s", 2, [{"a": 3}])
    again = MemoryStore()  # a recovering writer's own store: it never appended here
    again._streams = store._streams
    assert again.append_now("s", 0, [{"a": 1}, {"a": 2}]) == 3  # the head; nothing written
    assert again.append_now("s", 2, [(("a", 3),)]) is None  # not the same bytes
    assert again.append_now("s", 0, [{"a": 1}]) is None  # not the whole stored segment
    assert again.append_now("s", 1, [{"a": 2}]) is None  # no segment starts there
    assert again.append_now("s", 0, [{"a": 1}, {"a": 9}]) is None
    with pytest.raises(ConflictError):
        await again.append("s", 0, [{"a": 1}, {"a": 9}])
    assert len(store._streams["s"].data) == 2
    count, data = store._streams["s"].data[1]
    store._streams["s"].data[1] = (count, data[:-1] + bytes([data[-1] ^ 0xFF]))
    assert again.append_now("s", 2, [{"a": 3}]) is None  # damaged: append reports it
    with pytest.raises(FormatError):
        await again.append("s", 2, [{"a": 3}])


async def test_segment_now_is_the_first_batch_of_read_batches() -> None:
    store = MemoryStore()
    await store.append("s", 0, [0, 1, 2])
    await store.append("s", 3, [3, 4])
    for start, stop in [(0, 5), (1, 5), (1, 2), (3, 5), (4, 5)]:
        batches = [batch async for batch in store.read_batches("s", start, stop)]
        first = batches[0]
        assert store.segment_now("s", start, stop) == first
    assert store.segment_now("s", 5, 9) is None
    assert store.segment_now("missing", 0, 1) is None


async def test_segment_now_reports_a_damaged_segment_as_read_batches_does() -> None:
    store = MemoryStore()
    await store.append("s", 0, [{"a": 1}, {"a": 2}])
    count, data = store._streams["s"].data[0]
    store._streams["s"].data[0] = (count, data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(FormatError, match="checksum") as plain:
        store.segment_now("s", 0, 2)
    with pytest.raises(FormatError, match="checksum") as slow:
        [batch async for batch in store.read_batches("s", 0, 2)]
    assert str(plain.value) == str(slow.value)


async def test_write_waiter_is_done_when_the_item_is_there_else_at_the_next_write() -> None:
    store = MemoryStore()
    await store.append("s", 0, [1])
    there = store.write_waiter("s", 0)
    assert there is not None and there.done()
    waiting = store.write_waiter("s", 1)
    assert waiting is not None and not waiting.done()
    assert await store.append("s", 1, [2]) == 2
    assert waiting.done()
    dropped = store.write_waiter("s", 2)
    assert dropped is not None
    store.drop_waiter("s", dropped)
    assert "s" not in store._waiters
    await store.seal("s")
    sealed = store.write_waiter("s", 2)
    assert sealed is not None and sealed.done()


async def test_a_closed_store_declines_every_plain_call_and_the_coroutines_raise() -> None:
    store = MemoryStore()
    await store.append("s", 0, [1])
    await store.close()
    assert store.info_now("s") is None
    assert store.segment_now("s", 0, 1) is None
    assert store.write_waiter("s", 1) is None
    with pytest.raises(StoreClosedError):
        await store.info("s")


class CountingStore(MemoryStore):
    """Counts the coroutine calls a subclass expects to see."""

    def __init__(self) -> None:
        super().__init__()
        self.segment_writes = 0
        self.waits = 0

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        self.segment_writes += 1
        await super().write_segment(stream, seq, count, data, epoch)

    async def wait(self, stream: str, seq: int, timeout: float | None = None) -> bool:
        self.waits += 1
        return await super().wait(stream, seq, timeout=timeout)


async def test_a_subclass_that_changes_the_coroutines_sees_every_write_and_wait() -> None:
    store = CountingStore()
    assert store.info_now("s") is None
    result = await Runtime(store, basic, batch_size=1).run("r", {"count": 30})
    result.raise_on_failure()
    heads = {info.name: info.head for info in await store.streams()}
    # Every segment of the run went through write_segment (one item each at batch 1).
    assert store.segment_writes >= heads["r/generator-0"] + heads["r/processor-1"]
    assert store.waits > 0


async def test_a_run_of_small_segments_stores_what_a_run_of_one_segment_does() -> None:
    plain = MemoryStore()
    (await Runtime(plain, basic).run("r", {"count": 50})).raise_on_failure()
    small = MemoryStore()
    (
        await Runtime(small, basic, batch_size=1, flush_delay=0.0).run("r", {"count": 50})
    ).raise_on_failure()
    for stream in ["r/generator-0", "r/processor-1"]:
        assert [i async for _, i in small.read(stream)] == [i async for _, i in plain.read(stream)]
    assert len(small._streams["r/generator-0"].data) == 50  # one segment per item


def test_the_log_store_base_declines_every_plain_call() -> None:
    # What SQLiteStore and IgniteStore inherit: the runtime takes the coroutines.
    assert LogStore._write_now is None

    async def check() -> Any:
        store = MemoryStore()
        return (
            LogStore.info_now(store, "s"),
            LogStore.segment_now(store, "s", 0, 1),
            LogStore.write_waiter(store, "s", 0),
        )

    assert asyncio.run(check()) == (None, None, None)


async def test_shared_metadata_is_decoded_once_per_written_value() -> None:
    store = MemoryStore()
    assert await store.meta_get_shared("runs", "r") is None
    await store.meta_put("runs", "r", {"status": "running"})
    first = await store.meta_get_shared("runs", "r")
    again = await store.meta_get_shared("runs", "r")
    assert first is not None and first is again and first.value == {"status": "running"}
    scanned = await store.meta_scan_shared("runs")
    assert scanned == [("r", first)] and scanned[0][1] is first
    # meta_get still hands out a fresh copy the caller may change.
    fresh = await store.meta_get("runs", "r")
    assert fresh is not None and fresh.value is not first.value
    await store.meta_put("runs", "r", {"status": "done"})
    after = await store.meta_get_shared("runs", "r")
    assert after is not None and after.value == {"status": "done"} and after.version == 2
    assert first.value == {"status": "running"}  # the old value is not changed under its holder


async def test_shared_metadata_of_a_value_written_again_has_the_new_version() -> None:
    store = MemoryStore()
    await store.meta_put("runs", "r", 5)
    first = await store.meta_get_shared("runs", "r")
    await store.meta_put("runs", "r", 5)
    again = await store.meta_get_shared("runs", "r")
    assert first is not None and again is not None
    assert (first.version, again.version) == (1, 2) and again.value == 5


class FirstLookStore(MemoryStore):
    """A test store that changes meta_get: the shared reads must go through it."""

    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def meta_get(self, table: str, key: str) -> Any:
        self.gets += 1
        return await super().meta_get(table, key)


async def test_shared_metadata_goes_through_a_subclass_meta_get() -> None:
    store = FirstLookStore()
    await store.meta_put("runs", "r", {"status": "running"})
    before = store.gets
    assert await store.meta_get_shared("runs", "r") is not None
    assert store.gets == before + 1
