"""MemoryStore.write_segment_now: the segment write done before it returns, with the same
refusals as write_segment (the simulator's store views call it on every write)."""

from __future__ import annotations

import pytest

from perper.errors import HeadMovedError
from perper.store.base import encode_segment
from perper.store.memory import MemoryStore


async def test_a_segment_written_now_is_stored_before_anything_is_awaited() -> None:
    store = MemoryStore()
    store.write_segment_now("r/s", 0, 2, encode_segment([{"v": 0}, {"v": 1}]), 0)
    assert store._streams["r/s"].head == 2  # no await between the call and here
    assert [item async for _, item in store.read("r/s")] == [{"v": 0}, {"v": 1}]
    assert await store.append("r/s", 2, [{"v": 2}]) == 3


@pytest.mark.parametrize("where", ["below the head", "beyond the head", "sealed", "fenced"])
async def test_writing_now_refuses_what_write_segment_refuses(where: str) -> None:
    store = MemoryStore()
    await store.append("r/s", 0, [1, 2], epoch=2)
    seq, epoch = 2, 2
    if where == "below the head":
        seq = 1
    elif where == "beyond the head":
        seq = 3
    elif where == "sealed":
        await store.seal("r/s", epoch=2)
    else:
        epoch = 1
    data = encode_segment([3])
    with pytest.raises(HeadMovedError):
        store.write_segment_now("r/s", seq, 1, data, epoch)
    with pytest.raises(HeadMovedError):
        await store.write_segment("r/s", seq, 1, data, epoch)
    assert [item async for _, item in store.read("r/s")] == [1, 2]
