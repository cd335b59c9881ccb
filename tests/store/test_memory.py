"""MemoryStore's own read path (one async generator per pass) hands out exactly what the
segment layer (LogStore.read_batches over scan_segments) does, and raises what it raises."""

from __future__ import annotations

from typing import Any

import pytest

from perper.errors import FormatError, TrimmedError
from perper.store.base import LogStore
from perper.store.memory import MemoryStore


async def layered(store: MemoryStore, stream: str, start: int, stop: int | None) -> list[Any]:
    return [batch async for batch in LogStore.read_batches(store, stream, start, stop)]


async def direct(store: MemoryStore, stream: str, start: int, stop: int | None) -> list[Any]:
    return [batch async for batch in store.read_batches(stream, start, stop)]


async def filled() -> MemoryStore:
    """Segments of 1, 2, 3, 4 and 5 items: seqs 0, 1..2, 3..5, 6..9, 10..14."""
    store = MemoryStore()
    head = 0
    for size in range(1, 6):
        head = await store.append("r/s", head, [{"value": v} for v in range(head, head + size)])
    return store


@pytest.mark.parametrize("start", [0, 1, 2, 5, 6, 9, 14, 15, 20])
@pytest.mark.parametrize("stop", [None, 0, 1, 3, 7, 14, 15, 30])
async def test_reading_batches_directly_gives_what_the_segment_layer_gives(
    start: int, stop: int | None
) -> None:
    store = await filled()
    assert await direct(store, "r/s", start, stop) == await layered(store, "r/s", start, stop)
    assert [item async for item in store.read("r/s", start, stop)] == [
        item async for item in LogStore.read(store, "r/s", start, stop)
    ]


async def test_a_stream_never_written_reads_as_empty() -> None:
    assert await direct(MemoryStore(), "r/none", 0, None) == []
    assert await direct(MemoryStore(), "r/none", 3, 10) == []


async def test_a_read_sees_a_segment_appended_while_it_holds_a_batch() -> None:
    store = await filled()
    seen = []
    async for first, items in store.read_batches("r/s", 10):
        seen.append((first, len(items)))
        if first == 10:
            await store.append("r/s", 15, [{"value": 15}, {"value": 16}])
    assert seen == [(10, 5), (15, 2)]


async def test_a_read_below_a_trim_raises_trimmed_as_the_segment_layer_does() -> None:
    store = await filled()
    await store.trim("r/s", 6)
    with pytest.raises(TrimmedError):
        await direct(store, "r/s", 0, None)
    assert await direct(store, "r/s", 6, None) == await layered(store, "r/s", 6, None)


async def test_a_trim_while_a_reader_holds_a_batch_lets_it_read_on_by_seq() -> None:
    store = await filled()
    seen = []
    async for first, _items in store.read_batches("r/s", 3):
        seen.append(first)
        if first == 3:
            await store.trim("r/s", 6)
    assert seen == [3, 6, 10]


async def test_a_head_beyond_the_stored_items_is_corruption_not_the_end() -> None:
    store = await filled()
    store._streams["r/s"].head += 2
    with pytest.raises(FormatError, match="head 17"):
        await direct(store, "r/s", 0, None)


async def test_overlapping_segments_are_corruption() -> None:
    store = await filled()
    stream = store._streams["r/s"]
    stream.firsts[2] = 2  # the segment of seqs 3..5 claims to start at 2
    with pytest.raises(FormatError, match="overlapping"):
        await direct(store, "r/s", 0, None)
