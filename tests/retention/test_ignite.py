"""Retention on a real Ignite node: trims delete segment entries, and a trim cut short by a
crash leaves a readable stream. The node comes from ``PERPER_TEST_IGNITE``."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from perper.errors import ConfigError, TrimmedError
from perper.runtime import Runtime, RuntimeSettings
from perper.store import open_store
from perper.store.ignite import IgniteStore
from perper.store.ignite.layout import KIND_SEAL, SEGMENTS_CACHE, parse_header
from tests.retention.pipeline import build_app, expected_totals
from tests.retention.test_index import STREAM, index_rows, matches, order, three_segments

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


# ------------------------------------------------ indexed streams: trims and deletes


def fresh(url: str) -> IgniteStore:
    opened = open_store(url)
    assert isinstance(opened, IgniteStore)
    return opened


async def test_a_trim_cut_short_before_its_rows_answers_only_stored_items(
    store: IgniteStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await three_segments(store)
    assert await matches(store, "user = ?", [1]) == list(range(1, 30, 3))

    async def crash(*_: Any) -> None:
        raise Crash()

    monkeypatch.setattr(store.indexing, "trimmed", crash)
    with pytest.raises(Crash):
        await store.trim(STREAM, 20)
    async with fresh(url) as other:
        assert await index_rows(other) == list(range(30))  # the rows were left behind
        assert await matches(other, "user = ?", [1]) == [22, 25, 28]
        assert await matches(other, "user = ?", [1], start=20) == [22, 25, 28]
        await other.append(STREAM, 30, [order(seq) for seq in range(30, 40)])
        assert await other.trim(STREAM, 30) == 30
        assert await index_rows(other) == list(range(30, 40))  # the next trim took them


@pytest.mark.parametrize("steps", [1, 2, 3])
async def test_a_delete_cut_short_never_answers_a_query_with_items_that_are_gone(
    store: IgniteStore, url: str, steps: int
) -> None:
    await three_segments(store)
    assert await matches(store, "user = ?", [0]) == list(range(0, 30, 3))
    done = 0
    remove_keys, sql = store.io.remove_keys, store.indexing.sql

    async def counted(call: Any, *args: Any) -> Any:
        nonlocal done
        result = await call(*args)
        done += 1
        if done == steps:
            raise Crash()
        return result

    store.io.remove_keys = lambda *a: counted(remove_keys, *a)  # type: ignore[method-assign]
    store.indexing.sql = lambda *a: counted(sql, *a)  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await store.delete_stream(STREAM)
    async with fresh(url) as other:
        assert (await other.info(STREAM)).head == 30  # the segments are all there
        if await other.index_of(STREAM) is not None:
            assert await matches(other, "user = ?", [0]) == list(range(0, 30, 3))
        else:
            with pytest.raises(ConfigError, match="not indexed"):
                await matches(other, "user = ?", [0])
        await other.delete_stream(STREAM)
        assert (await other.info(STREAM)).head == 0
        assert await other.indexes() == {}
    async with fresh(url) as again:
        with pytest.raises(ConfigError, match="no stream"):
            await matches(again, "user = ?", [0])


async def test_segments_trimmed_before_any_query_indexed_them_are_skipped(
    store: IgniteStore, url: str
) -> None:
    await store.declare_index(STREAM, {"user": int, "amount": float})
    async with fresh(url) as writer:  # never looked at the declaration: writes no rows
        for first in (0, 10, 20):
            await writer.append(STREAM, first, [order(seq) for seq in range(first, first + 10)])
        assert writer.indexing.specs == {}
        assert await writer.trim(STREAM, 20) == 20
    assert await matches(store, "user = ?", [2]) == [20, 23, 26, 29]
    assert await index_rows(store) == list(range(20, 30))


async def test_a_query_fetches_its_matching_segments_in_one_round_trip(
    store: IgniteStore, url: str
) -> None:
    await store.declare_index(STREAM, {"user": int, "amount": float})
    for first in range(0, 400, 10):  # 40 segments, user 1 in each
        await store.append(STREAM, first, [order(seq) for seq in range(first, first + 10)])
    assert len(await matches(store, "user = ?", [1])) == 133  # indexed, and known here
    async with fresh(url + "&cache_mb=0.0001") as other:  # no segment cache: every one fetched
        await other.info(STREAM)
        fetched: list[int] = []  # segment keys per get_all, but the head's end probe
        get_all = other.io.get_all

        async def counted(cache: str, keys: list[str], what: str) -> dict[str, Any]:
            if not what.startswith("reading the end"):
                fetched.append(len(keys))
            return await get_all(cache, keys, what)

        other.io.get_all = counted  # type: ignore[method-assign]
        assert await matches(other, "user = ?", [1]) == list(range(1, 400, 3))
        assert fetched == [40], fetched


async def test_an_indexed_ephemeral_pipeline_on_ignite_trims_rows_and_queries_right(
    store: IgniteStore,
) -> None:
    from tests.retention import test_index_runtime as indexed

    count = 150
    result = await indexed.run(store, indexed.build_app(), count=count)
    assert result.status == "done", result
    picks = await indexed.check_picks(store, count)
    assert picks[-1]["window"][0] > count // 2, picks[-1]
    assert await store.first_seq("r/orders-0") == count
    assert await index_rows(store, "r/orders-0") == []  # every row went with its segment
    remaining = await store.io.get_all(
        SEGMENTS_CACHE, [store.layout.segment("r/orders-0", n) for n in range(count)], "test"
    )
    kinds = [parse_header(key, value)[0] for key, value in remaining.items()]
    assert kinds == [KIND_SEAL]  # of the whole stream only its seal marker is left


async def test_ctx_destroy_of_an_indexed_stream_on_ignite_then_a_query_says_it_is_gone(
    store: IgniteStore,
) -> None:
    from tests.retention import test_index_runtime as indexed

    runtime = Runtime(
        store, indexed.app, settings=RuntimeSettings(batch_size=50), clock=lambda: 0.0
    )
    result = await runtime.run("r")
    assert result.status == "done", result
    [answer] = [item async for _, item in store.read("r/after-1")]
    assert answer["before"] == [3, 10, 17, 24]
    assert "no stream 'r/users-0'" in answer["after"]
    assert await store.indexes() == {}
    rows = await store.indexing.sql(
        "test",
        "SELECT count(*) FROM SYS.TABLES WHERE TABLE_NAME = ?",
        [store.indexing.table("r/users-0")],
    )
    assert rows == [[0]]  # the SQL table was dropped
