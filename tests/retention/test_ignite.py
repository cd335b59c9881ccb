"""Retention on a real Ignite node: trims delete segment entries, and a trim cut short by a
crash leaves a readable stream. The node comes from ``PERPER_TEST_IGNITE``."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from perper.errors import TrimmedError
from perper.runtime import Runtime, RuntimeSettings
from perper.store import open_store
from perper.store.ignite import IgniteStore
from perper.store.ignite.layout import SEGMENTS_CACHE
from tests.retention.pipeline import build_app, expected_totals

pytestmark = pytest.mark.ignite

NODE = os.environ.get("PERPER_TEST_IGNITE", "")


class Crash(BaseException):
    """The process dies here."""


@pytest.fixture
def url(request: pytest.FixtureRequest) -> str:
    if not NODE:
        if "not ignite" in str(request.config.getoption("-m", default="")):
            pytest.skip("ignite tests deselected")
        pytest.fail("PERPER_TEST_IGNITE is not set: start a node ('perper fabric start')")
    return f"{NODE}?namespace=t-{uuid.uuid4().hex}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[IgniteStore]:
    opened = open_store(url)
    assert isinstance(opened, IgniteStore)
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_ephemeral_pipeline_on_ignite_deletes_what_its_readers_passed(
    store: IgniteStore,
) -> None:
    count = 2000
    runtime = Runtime(
        store,
        build_app(),
        settings=RuntimeSettings(batch_size=100),
        clock=lambda: 0.0,
        entropy=random.Random(0),
    )
    result = await runtime.run("r", {"count": count})
    assert result.status == "done", result
    assert [x async for _, x in store.read("r/total-2")] == expected_totals(count)
    for stream in ("r/numbers-0", "r/doubled-1"):
        assert await store.first_seq(stream) == count
        keys = [store.layout.segment(stream, n) for n in range(20)]
        assert await store.io.get_all(SEGMENTS_CACHE, keys, "test") == {}
    assert await store.first_seq("r/total-2") == 0


async def test_a_trim_cut_short_after_its_record_leaves_a_readable_stream(
    store: IgniteStore, url: str
) -> None:
    for start in range(0, 50, 10):
        await store.append("s", start, list(range(start, start + 10)))

    async def crash(*args: Any, **kwargs: Any) -> None:
        raise Crash()

    store.io.remove_keys = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await store.trim("s", 30)
    async with open_store(url) as fresh:
        assert await fresh.first_seq("s") == 30
        assert [x async for _, x in fresh.read("s", 30)] == list(range(30, 50))
        with pytest.raises(TrimmedError):
            _ = [x async for x in fresh.read("s", 0)]
        assert await fresh.trim("s", 40) == 40  # trimming goes on from the record
        assert await fresh.head("s") == 50


async def test_a_reader_in_another_process_learns_of_a_trim(store: IgniteStore, url: str) -> None:
    async with open_store(url) as other:
        for start in range(0, 400, 10):
            await store.append("s", start, list(range(start, start + 10)))
        assert len([x async for x in other.read("s", 0, 20)]) == 20
        await store.trim("s", 390)
        await store.append("s", 400, [400])
        assert await other.head("s") == 401
        assert [x async for _, x in other.read("s", 395)] == [*range(395, 401)]
        with pytest.raises(TrimmedError):
            _ = [x async for x in other.read("s", 100)]


async def test_a_deleted_ignite_stream_is_unlisted_and_reads_empty(
    store: IgniteStore, url: str
) -> None:
    await store.append("r/a", 0, [1, 2])
    await store.seal("r/a")
    await store.append("r/b", 0, [3])
    await store.delete_stream("r/a")
    async with open_store(url) as fresh:
        assert [i.name for i in await fresh.streams()] == ["r/b"]
        assert (await fresh.info("r/a")).head == 0
        assert [x async for x in fresh.read("r/a")] == []
