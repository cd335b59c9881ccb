"""What a deleted stream leaves behind in the Ignite store when other writes were in
flight or other processes remembered it: never a hint of a stream that is gone, never a
log with a hole at its start.

The node's address comes from ``PERPER_TEST_IGNITE``, as in tests/store/test_ignite.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest

pytest.importorskip("pyignite")

from perper.errors import GapError
from perper.store import open_store
from perper.store.ignite import HINT_EVERY, IgniteStore
from perper.store.ignite.layout import SEGMENTS_CACHE

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


async def items(store: IgniteStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def test_a_hint_update_that_lands_after_its_stream_was_deleted_does_not_revive_it(
    url: str,
) -> None:
    async with ignite(url) as writer:
        hint = writer.layout.hint("r/s")
        in_flight, release = asyncio.Event(), asyncio.Event()
        put, replace = writer.io.put, writer.io.replace

        async def held_put(cache: str, key: str, value: bytes, what: str) -> None:
            if key == hint:
                in_flight.set()
                await release.wait()
            await put(cache, key, value, what)

        async def held_replace(cache: str, key: str, old: bytes, new: bytes, what: str) -> bool:
            if key == hint:
                in_flight.set()
                await release.wait()
            return await replace(cache, key, old, new, what)

        writer.io.put = held_put  # type: ignore[method-assign]
        writer.io.replace = held_replace  # type: ignore[method-assign]
        for n in range(HINT_EVERY + 1):  # segment HINT_EVERY sends a hint in the background
            await writer.append("r/s", n, [n])
        await asyncio.wait_for(in_flight.wait(), 10)
        async with ignite(url) as admin:
            await admin.delete_stream("r/s")
        release.set()
    # close() let the delayed hint land (or be refused)
    async with ignite(url) as fresh:
        assert (await fresh.info("r/s")).head == 0
        assert [info.name for info in await fresh.streams()] == []
        assert await fresh.append("r/s", 0, ["new"]) == 1
        assert await items(fresh, "r/s") == ["new"]
    async with ignite(url) as other:
        assert await items(other, "r/s") == ["new"]


async def test_an_appender_remembering_a_deleted_stream_is_refused_and_leaves_no_hole(
    url: str,
) -> None:
    async with ignite(url + "&recheck=0.000001") as writer:
        await writer.append("r/s", 0, [0, 1])
        await writer.append("r/s", 2, [2])
        async with ignite(url) as admin:
            await admin.delete_stream("r/s")
        with pytest.raises(GapError, match="r/s"):
            await writer.append("r/s", 3, [3])
        orphan = writer.layout.segment("r/s", 2)
        assert not await writer.io.contains(SEGMENTS_CACHE, orphan, "checking")
        assert await writer.append("r/s", 0, ["again"]) == 1  # the stream starts afresh
    async with ignite(url) as fresh:
        assert await items(fresh, "r/s") == ["again"]
        assert [info.name for info in await fresh.streams()] == ["r/s"]


async def test_a_producer_remembering_a_deleted_stream_starts_it_afresh(url: str) -> None:
    async with ignite(url + "&recheck=0.000001") as producer:
        assert await producer.append_keyed("r/k", ["a"], ["ka"]) == [0]
        assert await producer.append_keyed("r/k", ["b"], ["kb"]) == [1]
        async with ignite(url) as admin:
            await admin.delete_stream("r/k")
        assert await producer.append_keyed("r/k", ["c"], ["kc"]) == [0]
        assert await producer.append_keyed("r/k", ["a"], ["ka"]) == [1]  # old keys are gone
    async with ignite(url) as fresh:
        assert await items(fresh, "r/k") == ["c", "a"]
        assert await fresh.lookup_keys("r/k", ["ka", "kb", "kc"]) == {"ka": 1, "kc": 0}


async def test_a_recreated_stream_is_not_written_at_the_old_position(url: str) -> None:
    async with ignite(url + "&recheck=0.000001") as writer:
        await writer.append("r/s", 0, [0])
        await writer.append("r/s", 1, [1])
        await writer.append("r/s", 2, [2])
        async with ignite(url) as admin:
            await admin.delete_stream("r/s")
            await admin.append("r/s", 0, ["x"])
        with pytest.raises(GapError, match="r/s"):
            await writer.append("r/s", 3, [3])
    async with ignite(url) as fresh:
        assert await items(fresh, "r/s") == ["x"]


async def test_a_process_that_knew_a_deleted_streams_index_uses_the_new_declaration(
    url: str,
) -> None:
    async with ignite(url + "&recheck=0.000001") as writer:
        await writer.declare_index("r/q", {"user": int})
        await writer.append("r/q", 0, [{"user": 1}, {"user": 2}])
        assert [seq async for seq, _ in writer.query("r/q", "user = ?", [2])] == [1]
        async with ignite(url) as admin:  # deleted and indexed on another field
            await admin.delete_stream("r/q")
            await admin.declare_index("r/q", {"page": str})
        await writer.append("r/q", 0, [{"page": "/a"}, {"page": "/b"}])
        assert await writer.index_of("r/q") == (("page", "str"),)
        assert [seq async for seq, _ in writer.query("r/q", "page = ?", ["/b"])] == [1]
    async with ignite(url) as fresh:
        assert [seq async for seq, _ in fresh.query("r/q", "page = ?", ["/a"])] == [0]
