"""The public seams of the store contract, on every store kind: the segment layer,
``meta_update``, ``close()`` and the read-only wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from perper.errors import HeadMovedError, StoreClosedError, StoreError
from perper.store import LogStore, open_store
from perper.store.base import KEEP, decode_segment, encode_segment
from perper.store.readonly import ReadOnlyStore
from tests.conftest import store_url


async def test_segments_copied_raw_through_the_segment_layer_read_back_equal(
    store: LogStore,
) -> None:
    await store.append("s", 0, [1, 2, 3])
    await store.append("s", 3, [4])
    copy = open_store("memory://")
    async for first, count, data in store.segments("s"):
        await copy.write_segment("s", first, count, data, 0)
    assert [item async for _, item in copy.read("s")] == [1, 2, 3, 4]
    segments = [(first, count) async for first, count, _ in store.segments("s", 1, 3)]
    assert segments == [(0, 3)]


async def test_write_segment_away_from_the_head_raises_head_moved(store: LogStore) -> None:
    await store.append("s", 0, ["a"])
    with pytest.raises(HeadMovedError):
        await store.write_segment("s", 0, 1, encode_segment(["b"]), 0)
    assert await store.write_seal("s", 0) is True
    with pytest.raises(HeadMovedError):
        await store.write_segment("s", 1, 1, encode_segment(["b"]), 0)
    assert [item async for _, item in store.read("s")] == ["a"]


async def test_write_seal_refuses_a_lower_epoch(store: LogStore) -> None:
    await store.append("s", 0, ["a"], epoch=3)
    assert await store.write_seal("s", 2) is False
    assert (await store.info("s")).sealed is False


async def test_meta_update_applies_a_function_and_keep_leaves_the_entry(store: LogStore) -> None:
    def bump(value: Any) -> Any:
        return {"n": 0 if value is None else value["n"] + 1}

    first = await store.meta_update("runs", "r", bump)
    assert first is not None and first.value == {"n": 0} and first.version == 1
    second = await store.meta_update("runs", "r", bump)
    assert second is not None and second.value == {"n": 1} and second.version == 2
    kept = await store.meta_update("runs", "r", lambda value: KEEP)
    assert kept is not None and kept.version == 2
    assert await store.meta_update("runs", "absent", lambda value: KEEP) is None
    assert await store.meta_get("runs", "absent") is None


async def test_meta_update_retries_when_another_writer_wins_the_race(store: LogStore) -> None:
    await store.meta_put("leases", "e", {"owner": "a"})
    raced = False

    def take(value: Any) -> Any:
        return {"owner": value["owner"] + "+b"}

    real_cas = store.meta_cas

    async def racing_cas(table: str, key: str, value: Any, *, version: int) -> int | None:
        nonlocal raced
        if not raced:  # another writer gets in between our read and our CAS, once
            raced = True
            await real_cas(table, key, {"owner": "c"}, version=version)
        return await real_cas(table, key, value, version=version)

    store.meta_cas = racing_cas  # type: ignore[method-assign]
    entry = await store.meta_update("leases", "e", take)
    store.meta_cas = real_cas  # type: ignore[method-assign]
    assert entry is not None and entry.value == {"owner": "c+b"}
    stored = await store.meta_get("leases", "e")
    assert stored is not None and stored.value == {"owner": "c+b"}


CALLS: dict[str, Callable[[LogStore], Awaitable[object]]] = {
    "info": lambda s: s.info("s"),
    "head": lambda s: s.head("s"),
    "append": lambda s: s.append("s", 1, ["b"]),
    "read": lambda s: _drain(s.read("s")),
    "segments": lambda s: _drain(s.segments("s")),
    "write_segment": lambda s: s.write_segment("s", 1, 1, encode_segment(["b"]), 0),
    "seal": lambda s: s.seal("s"),
    "write_seal": lambda s: s.write_seal("s", 0),
    "streams": lambda s: s.streams(),
    "wait": lambda s: s.wait("s", 5, 0.01),
    "meta_get": lambda s: s.meta_get("runs", "r"),
    "meta_cas": lambda s: s.meta_cas("runs", "r", 1, version=0),
    "meta_put": lambda s: s.meta_put("runs", "r", 1),
    "meta_update": lambda s: s.meta_update("runs", "r", lambda v: 1),
    "meta_scan": lambda s: s.meta_scan("runs"),
}


async def _drain(iterator: Any) -> list[Any]:
    return [x async for x in iterator]


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_every_call_after_close_raises_store_closed(
    store_kind: str, tmp_path: Any, call: str
) -> None:
    store = open_store(store_url(store_kind, tmp_path))
    await store.append("s", 0, ["a"])
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreClosedError, match="closed"):
        await CALLS[call](store)


async def test_the_read_only_wrapper_reads_everything_and_refuses_every_write(
    store: LogStore,
) -> None:
    await store.append("s", 0, ["a", "b"])
    await store.seal("s")
    await store.meta_put("runs", "r", {"x": 1})
    view = ReadOnlyStore(store, reason="for replay", owned=False)
    assert [item async for _, item in view.read("s")] == ["a", "b"]
    assert [(i.name, i.head, i.sealed) for i in await view.streams()] == [("s", 2, True)]
    entry = await view.meta_get("runs", "r")
    assert entry is not None and entry.value == {"x": 1}
    assert await view.wait("s", 0, 0.01) is True
    for write in (
        view.append("t", 0, ["x"]),
        view.write_segment("t", 0, 1, encode_segment(["x"]), 0),
        view.seal("t"),
        view.write_seal("t", 0),
        view.meta_cas("runs", "q", 1, version=0),
        view.meta_put("runs", "q", 1),
    ):
        with pytest.raises(StoreError, match="read-only for replay"):
            await write
    assert await store.head("t") == 0 and await store.meta_get("runs", "q") is None
    await view.close()
    with pytest.raises(StoreClosedError):
        await view.info("s")
    assert await store.head("s") == 2  # not owned: the wrapped store stays open


def test_decode_segment_names_the_store_the_stream_and_the_seqs() -> None:
    data = encode_segment([1, 2])
    assert decode_segment(5, 2, data) == [1, 2]
    with pytest.raises(StoreError, match=r"sqlite:///x.db: stream 's', segment at seq 5..7"):
        decode_segment(5, 3, data, stream="s", where="sqlite:///x.db")
