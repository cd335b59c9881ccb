"""What a writer killed mid-way, or a write the cluster lost, leaves behind in the Ignite
store: never a stream that reads as empty or goes unlisted while its items are stored.

These are the paths behind the failover flake (tests/fabric/test_failover.py): a worker
SIGKILLed between the directory entry and the end hint of a stream it was registering left
the hint alone; the worker that took the execution over found the hint, took the stream for
registered, and wrote all of it unlisted, so ``perper export`` skipped it.

The node's address comes from ``PERPER_TEST_IGNITE``, as in tests/store/test_ignite.py.
"""

from __future__ import annotations

import os
import uuid

import pytest

pytest.importorskip("pyignite")

from perper import codec
from perper.errors import FormatError, StoreUnavailableError
from perper.store import open_store
from perper.store.ignite import IgniteStore
from perper.store.ignite.layout import HINT, SEGMENTS_CACHE, shard_of

pytestmark = pytest.mark.ignite

NODE = os.environ.get("PERPER_TEST_IGNITE", "")


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    """A fresh namespace on the test node; fails (never skips) without a node."""
    if not NODE:
        if "not ignite" in str(request.config.getoption("-m", default="")):
            pytest.skip("ignite tests deselected")
        pytest.fail("PERPER_TEST_IGNITE is not set: start a node ('perper fabric start')")
    return f"{NODE}?namespace=t-{uuid.uuid4().hex}"


def ignite(url: str) -> IgniteStore:
    store = open_store(url)
    assert isinstance(store, IgniteStore)
    return store


async def listed(url: str, prefix: str = "") -> list[str]:
    """The stream names a fresh process (an export, say) lists."""
    async with ignite(url) as reader:
        return [info.name for info in await reader.streams(prefix=prefix)]


async def test_a_stream_whose_registering_writer_died_after_the_hint_is_listed_when_written(
    url: str,
) -> None:
    async with ignite(url) as dead:  # what the killed writer got to store: the hint only
        await dead.io.put_if_absent(
            SEGMENTS_CACHE, dead.layout.hint("r/s"), HINT.pack(0, 0, 0), "registering"
        )
    async with ignite(url) as successor:  # the worker that took the execution over
        await successor.append("r/s", 0, [1, 2])
    assert await listed(url, "r/") == ["r/s"]
    async with ignite(url) as sealer:  # and a stream sealed empty over such a hint
        await sealer.io.put_if_absent(
            SEGMENTS_CACHE, sealer.layout.hint("r/t"), HINT.pack(0, 0, 0), "registering"
        )
    async with ignite(url) as successor:
        await successor.seal("r/t")
    assert await listed(url, "r/") == ["r/s", "r/t"]


async def test_a_stream_is_listed_before_its_hint_exists(url: str) -> None:
    async with ignite(url) as store:
        hint = store.layout.hint("r/s")
        written: list[str] = []
        put_if_absent = store.io.put_if_absent

        async def recording(cache: str, key: str, value: bytes, what: str) -> bool:
            written.append(key)
            return await put_if_absent(cache, key, value, what)

        async def killed(area: str, name: str) -> None:
            raise StoreUnavailableError("the writer died while listing the stream")

        store.io.put_if_absent = recording  # type: ignore[method-assign]
        store.directory.index = killed  # type: ignore[method-assign]
        with pytest.raises(StoreUnavailableError):
            await store.append("r/s", 0, [1])
        assert hint not in written
        assert await store.io.get(SEGMENTS_CACHE, hint, "reading") is None


async def test_a_bucket_written_without_its_group_does_not_stop_the_group_being_listed(
    url: str,
) -> None:
    async with ignite(url) as dead:  # killed after the bucket, before the list of groups
        bucket = dead.layout.directory("streams", "g", shard_of("g/x"))
        await dead.directory._add_member(bucket, "g/x", "indexing")
    async with ignite(url) as worker:
        assert await worker.directory.listed("streams", "g/", "listing") == ["g/x"]
        await worker.append("g/y", 0, [1])  # registers g/y: its group must be listed now
    assert await listed(url) == ["g/x", "g/y"]


async def test_a_stream_with_items_but_no_hint_is_corrupt_not_empty(url: str) -> None:
    async with ignite(url) as writer:
        await writer.append("r/s", 0, [1, 2, 3])
        await writer.io.remove_keys(SEGMENTS_CACHE, [writer.layout.hint("r/s")], "losing")
    async with ignite(url) as reader:
        with pytest.raises(FormatError, match=r"'r/s' has segment 0 but no end hint"):
            await reader.info("r/s")
        assert (await reader.info("r/never")).head == 0  # no hint, no segment: no stream


async def test_a_segment_missing_below_the_known_end_is_corrupt_not_the_end(url: str) -> None:
    async with ignite(url) as writer:
        for n in range(3):
            await writer.append_keyed("r/k", [n], [f"key-{n}"])
    async with ignite(url + "&cache_mb=0.000001") as reader:  # keeps no segment in memory
        assert (await reader.info("r/k")).head == 3
        await reader.io.remove_keys(SEGMENTS_CACHE, [reader.layout.segment("r/k", 1)], "losing")
        with pytest.raises(FormatError, match="'r/k' is missing the items from seq 1 "):
            await reader.segment_keys("r/k")
        with pytest.raises(FormatError, match="r/k"):
            await reader.lookup_keys("r/k", ["key-2"])


async def test_a_stream_left_unlisted_by_an_older_perper_is_still_exported_and_listed(
    url: str,
) -> None:
    from perper.runtime.listing import list_streams
    from perper.store.base import encode_segment
    from perper.store.ignite.layout import HEADER, KIND_ITEMS
    from perper.store.memory import MemoryStore
    from perper.store.mirror import copy_store

    async with ignite(url) as old:  # what the old registration could leave: no listing
        await old.io.put_if_absent(
            SEGMENTS_CACHE, old.layout.hint("r/s"), HINT.pack(0, 0, 0), "registering"
        )
        segment = HEADER.pack(KIND_ITEMS, 0, 2, 0) + encode_segment([{"v": 0}, {"v": 1}])
        await old.io.put_if_absent(SEGMENTS_CACHE, old.layout.segment("r/s", 0), segment, "w")
        execution = {"id": "r/s", "run": "r", "function": "f", "kind": "stream"}
        await old.meta_put(
            "executions", "r/s", {**execution, "params": codec.pack({}), "status": "done"}
        )
    async with ignite(url) as reader:  # the directory does not list it
        assert await reader.directory.listed("streams", "r/", "listing") == []
    async with ignite(url) as source:
        copy = MemoryStore()
        stats = await copy_store(source, copy, run="r")
        assert stats.items == 2
        assert [item async for _, item in copy.read("r/s")] == [{"v": 0}, {"v": 1}]
        assert [(row.name, row.items) for row in await list_streams(source, run="r")] == [
            ("r/s", 2)
        ]


async def test_a_stream_left_unlisted_by_an_older_perper_is_in_the_stores_own_listing(
    url: str,
) -> None:
    from perper.store.base import encode_segment
    from perper.store.ignite.layout import HEADER, KIND_ITEMS

    async with ignite(url) as old:  # as in the test above: items, an execution, no listing
        await old.io.put_if_absent(
            SEGMENTS_CACHE, old.layout.hint("r/s"), HINT.pack(0, 0, 0), "registering"
        )
        segment = HEADER.pack(KIND_ITEMS, 0, 2, 0) + encode_segment([{"v": 0}, {"v": 1}])
        await old.io.put_if_absent(SEGMENTS_CACHE, old.layout.segment("r/s", 0), segment, "w")
        execution = {"id": "r/s", "run": "r", "function": "f", "kind": "stream"}
        await old.meta_put(
            "executions", "r/s", {**execution, "params": codec.pack({}), "status": "done"}
        )
        await old.meta_put("executions", "r/never", {**execution, "id": "r/never"})
        await old.append("r/t", 0, [1])  # listed as this perper lists
    async with ignite(url) as reader:
        assert [(i.name, i.head) for i in await reader.streams()] == [("r/s", 2), ("r/t", 1)]
        assert [i.name for i in await reader.streams(prefix="r/")] == ["r/s", "r/t"]
        assert [i.name for i in await reader.streams(prefix="q/")] == []
