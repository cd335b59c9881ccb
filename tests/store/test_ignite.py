"""What only the Ignite store promises: namespaces, crash safety, bounded failures, cheap seeks.

The node's address comes from ``PERPER_TEST_IGNITE`` (``make test`` starts a node and sets it).
Every test opens its own random namespace, so reruns against one node never see old data.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("pyignite")

from perper.errors import ConfigError, ConflictError, FormatError, StoreUnavailableError
from perper.store import open_store
from perper.store.base import KEEP, LogStore
from perper.store.ignite import DIRECTORY_SHARDS, HINT_EVERY, Connection, IgniteStore
from perper.store.ignite.layout import shard_of

NODE = os.environ.get("PERPER_TEST_IGNITE", "")


@pytest.fixture
def node(request: pytest.FixtureRequest) -> str:
    """The test node's URL; fails (never skips) when an ignite test runs without one."""
    if not NODE:
        if "not ignite" in str(request.config.getoption("-m", default="")):
            pytest.skip("ignite tests deselected")
        pytest.fail(
            "PERPER_TEST_IGNITE is not set: start a node ('perper fabric start') and export "
            "PERPER_TEST_IGNITE=ignite://127.0.0.1:10800, or deselect with -m 'not ignite'"
        )
    return NODE


def fresh_url(node: str, **options: str) -> str:
    query = "&".join(
        f"{k}={v}" for k, v in {"namespace": f"t-{uuid.uuid4().hex}", **options}.items()
    )
    return f"{node}?{query}"


@pytest.fixture
async def store(node: str) -> AsyncIterator[IgniteStore]:
    opened = open_store(fresh_url(node))
    assert isinstance(opened, IgniteStore)
    try:
        yield opened
    finally:
        await opened.close()


async def items_of(store: Any, stream: str, **kwargs: int) -> list[Any]:
    return [item async for _, item in store.read(stream, **kwargs)]


def a_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ without a node


def test_a_url_with_an_unknown_option_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown option 'namespaec'"):
        IgniteStore.from_url("ignite://127.0.0.1:10800?namespaec=x")


def test_a_url_with_a_bad_port_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match=r"port 'x'.*127\.0\.0\.1:10800"):
        IgniteStore.from_url("ignite://127.0.0.1:x")


def test_a_namespace_with_a_separator_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"namespace 'a\|b'"):
        IgniteStore.from_url("ignite://127.0.0.1:10800?namespace=a|b")


def test_url_options_reach_the_client_and_the_password_is_masked() -> None:
    store = IgniteStore.from_url(
        "ignite://127.0.0.1:10800,127.0.0.1:10801?namespace=ns&username=u&password=secret"
        "&tls=1&timeout=2.5&retry=1&partition_aware=0"
    )
    assert store.addresses == [("127.0.0.1", 10800), ("127.0.0.1", 10801)]
    assert store.namespace == "ns"
    assert store.io.client_args == {"use_ssl": True, "username": "u", "password": "secret"}
    assert (store.io.timeout, store.io.retry, store.io.partition_aware) == (2.5, 1.0, False)
    assert "secret" not in store.url
    assert "password=***" in store.url


async def test_an_unreachable_address_raises_store_unavailable_naming_it_within_a_bound() -> None:
    port = a_free_port()
    store = open_store(f"ignite://127.0.0.1:{port}?retry=1")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}"):
        await store.head("s")
    assert time.monotonic() - started < 5
    await store.close()


async def test_an_unreachable_address_gives_up_after_a_few_seconds_by_default() -> None:
    port = a_free_port()
    store = open_store(f"ignite://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="perper fabric start"):
        await store.append("s", 0, [1])
    assert 2 < time.monotonic() - started < 10
    await store.close()


async def test_a_silent_server_times_out_instead_of_hanging() -> None:
    # A socket that accepts connections but never answers the handshake.
    accepted: list[asyncio.StreamWriter] = []

    async def accept_and_say_nothing(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = open_store(f"ignite://127.0.0.1:{port}?retry=1&timeout=0.5")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}"):
        await store.head("s")
    assert time.monotonic() - started < 5
    await store.close()
    assert accepted  # it did connect, and waited for an answer that never came
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_the_request_watchdog_times_out_only_overdue_requests() -> None:
    conn = Connection(None, None, None, asyncio.get_running_loop())

    async def slow(_: Any) -> None:
        await asyncio.sleep(10)

    async def quick(_: Any) -> int:
        await asyncio.sleep(0.1)
        return 2

    with pytest.raises(TimeoutError):
        await conn.request(slow, 0.05)
    overdue = asyncio.ensure_future(conn.request(slow, 0.05))
    in_time = asyncio.ensure_future(conn.request(quick, 1.0))
    with pytest.raises(TimeoutError):
        await overdue
    assert await in_time == 2
    cancelled = asyncio.ensure_future(conn.request(slow, 5.0))
    await asyncio.sleep(0.01)
    cancelled.cancel()  # a cancel from outside stays a cancel, not a timeout
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not conn.inflight and not conn.expired


# --------------------------------------------------------------------- with a node


@pytest.mark.ignite
async def test_namespaces_isolate_streams_and_metadata(node: str) -> None:
    async with open_store(fresh_url(node)) as a, open_store(fresh_url(node)) as b:
        await a.append("s", 0, ["a"])
        await a.meta_put("runs", "r", {"by": "a"})
        assert await b.head("s") == 0
        assert await b.meta_get("runs", "r") is None
        assert await b.streams() == []
        assert await b.meta_scan("runs") == []
        await b.append("s", 0, ["b"])
        assert await items_of(a, "s") == ["a"]
        assert await items_of(b, "s") == ["b"]
        assert [s.name for s in await a.streams()] == ["s"]


@pytest.mark.ignite
async def test_reopening_the_namespace_sees_streams_seals_and_metadata(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as store:
        for first in range(0, 100, 5):
            await store.append("s", first, [{"i": i} for i in range(first, first + 5)])
        await store.seal("s", epoch=3)
        await store.meta_put("checkpoints", "r/e", {"state": [1, 2]})
    async with open_store(url) as store:
        info = await store.info("s")
        assert (info.head, info.sealed, info.epoch) == (100, True, 3)
        assert await items_of(store, "s", start=42, stop=44) == [{"i": 42}, {"i": 43}]
        entry = await store.meta_get("checkpoints", "r/e")
        assert entry is not None
        assert entry.value == {"state": [1, 2]}


@pytest.mark.ignite
async def test_a_writer_whose_hints_never_landed_leaves_a_stream_others_read_whole(
    node: str,
) -> None:
    url = fresh_url(node)
    writer = open_store(url)
    assert isinstance(writer, IgniteStore)

    async def lost(stream: str, hint: bytes) -> None:
        pass  # the process died before each hint landed: only the segments are stored

    writer._put_hint = lost  # type: ignore[method-assign]
    count = 3 * HINT_EVERY + 5
    for n in range(count):
        await writer.append("s", n, [n])
    await writer.close()

    async with open_store(url) as recovered:
        # Segments are the commit, hints only shortcuts: a stale one costs a few probes.
        assert await recovered.head("s") == count
        assert await recovered.append("s", count - 1, [count - 1]) == count  # a no-op
        assert await recovered.append("s", count, [count]) == count + 1
        assert await items_of(recovered, "s", start=count - 3) == [
            count - 3,
            count - 2,
            count - 1,
            count,
        ]
        assert await items_of(recovered, "s") == list(range(count + 1))


@pytest.mark.ignite
async def test_a_writer_that_died_before_its_first_segment_leaves_an_empty_stream(
    node: str,
) -> None:
    url = fresh_url(node)
    writer = open_store(url)
    assert isinstance(writer, IgniteStore)
    real = writer.io.put_if_absent

    async def die_on_segments(cache: str, key: str, value: bytes, what: str) -> bool:
        if "|s|" in key:
            raise KeyboardInterrupt
        return await real(cache, key, value, what)

    writer.io.put_if_absent = die_on_segments  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        await writer.append("s", 0, ["lost"])
    await writer.close()

    async with open_store(url) as recovered:
        assert [(s.name, s.head) for s in await recovered.streams()] == [("s", 0)]
        assert await recovered.append("s", 0, ["kept"]) == 1
        assert await items_of(recovered, "s") == ["kept"]


def lose_answer_once(cache: Any, method: str) -> list[int]:
    """Make ``cache.method`` apply the request, then fail as if the socket died."""
    real = getattr(cache, method)
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        await real(*args, **kwargs)
        raise ConnectionResetError("connection reset by peer (test)")

    setattr(cache, method, flaky)
    return calls


@pytest.mark.ignite
async def test_an_append_whose_answer_was_lost_is_retried_and_counted_once(
    store: IgniteStore,
) -> None:
    await store.append("s", 0, [0, 1])
    assert store.io.conn is not None
    calls = lose_answer_once(store.io.conn.segment_requests, "put_if_absent")
    assert await store.append("s", 2, [2, 3]) == 4
    assert calls == [1]  # the retry ran on a fresh connection
    assert await store.head("s") == 4
    assert await items_of(store, "s") == [0, 1, 2, 3]


@pytest.mark.ignite
async def test_a_compare_and_set_whose_answer_was_lost_reports_success(
    store: IgniteStore,
) -> None:
    assert await store.meta_cas("leases", "e", {"owner": "w1"}, version=0) == 1
    assert store.io.conn is not None
    lose_answer_once(store.io.conn.meta_requests, "replace_if_equals")
    assert await store.meta_cas("leases", "e", {"owner": "w2"}, version=1) == 2
    entry = await store.meta_get("leases", "e")
    assert entry is not None
    assert (entry.version, entry.value) == (2, {"owner": "w2"})


def record_requests(store: IgniteStore) -> list[str]:
    """Make ``store`` note what each request it sends is for (its ``what``), in order."""
    whats: list[str] = []
    real = store.io.request

    async def counted(what: str, call: Any) -> Any:
        whats.append(what)
        return await real(what, call)

    store.io.request = counted  # type: ignore[method-assign]
    return whats


@pytest.mark.ignite
async def test_updating_an_entry_this_process_wrote_last_takes_one_round_trip(
    store: IgniteStore,
) -> None:
    await store.meta_update("checkpoints", "e", lambda _: {"out": 1})
    whats = record_requests(store)
    entry = await store.meta_update("checkpoints", "e", lambda v: {"out": v["out"] + 1})
    assert entry is not None and (entry.version, entry.value) == (2, {"out": 2})
    assert whats == ["writing checkpoints 'e'"]  # no read before the compare-and-set
    stored = await store.meta_get("checkpoints", "e")
    assert stored is not None and (stored.version, stored.value) == (2, {"out": 2})


@pytest.mark.ignite
async def test_an_update_from_a_stale_copy_is_decided_on_the_entry_as_stored(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as a, open_store(url) as b:
        await a.meta_update("checkpoints", "e", lambda _: {"epoch": 1, "n": 1})
        await b.meta_update("checkpoints", "e", lambda v: {"epoch": 2, "n": v["n"] + 1})
        seen: list[Any] = []

        def bump(value: Any) -> Any:
            seen.append(value)
            return {**value, "n": value["n"] + 1}

        entry = await a.meta_update("checkpoints", "e", bump)  # a's copy is b's write behind
        assert entry is not None and (entry.version, entry.value) == (3, {"epoch": 2, "n": 3})
        assert seen == [{"epoch": 1, "n": 1}, {"epoch": 2, "n": 2}]

        def fenced(value: Any) -> Any:
            if value["epoch"] > 2:
                raise RuntimeError(f"fenced by epoch {value['epoch']}")
            return {**value, "n": 0}

        await b.meta_update("checkpoints", "e", lambda v: {**v, "epoch": 3})
        with pytest.raises(RuntimeError, match="fenced by epoch 3"):
            await a.meta_update("checkpoints", "e", fenced)  # passes on a's copy, not stored
        stored = await b.meta_get("checkpoints", "e")
        assert stored is not None and stored.value == {"epoch": 3, "n": 3}
        assert await a.meta_update("checkpoints", "e", lambda v: KEEP) == stored


@pytest.mark.ignite
async def test_a_name_in_a_new_group_is_listed_in_its_group_and_its_bucket_at_once(
    store: IgniteStore,
) -> None:
    in_flight, most = 0, 0
    real = store.io.request

    async def counted(what: str, call: Any) -> Any:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await real(what, call)
        finally:
            in_flight -= 1

    store.io.request = counted  # type: ignore[method-assign]
    await store.directory.index("streams", "run-a/s")
    assert most == 2  # the group list and the name's bucket, read together
    assert await store.directory.listed("streams", "", "listing") == ["run-a/s"]
    most = 0
    await store.directory.index("streams", "run-a/t")  # a known group: its bucket only
    assert most == 1
    assert await store.directory.listed("streams", "run-a/", "listing") == ["run-a/s", "run-a/t"]


def names_in_one_bucket(group: str, count: int) -> list[str]:
    names = (f"{group}/s{i}" for i in range(10_000))
    first = next(names)
    return [first, *[n for n in names if shard_of(n) == shard_of(first)][: count - 1]]


@pytest.mark.ignite
async def test_a_name_added_to_a_bucket_this_process_wrote_takes_one_compare_and_set(
    store: IgniteStore,
) -> None:
    first, second = names_in_one_bucket("run-c", 2)
    await store.directory.index("streams", first)
    whats = record_requests(store)
    await store.directory.index("streams", second)
    assert whats == [f"indexing {second!r}"]  # no read of the bucket first
    assert await store.directory.listed("streams", "run-c/", "listing") == sorted([first, second])


@pytest.mark.ignite
async def test_a_name_added_from_a_stale_copy_of_a_bucket_keeps_what_others_added(
    node: str,
) -> None:
    url = fresh_url(node)
    a_name, b_name, later = names_in_one_bucket("run-d", 3)
    async with open_store(url) as a, open_store(url) as b:
        assert isinstance(a, IgniteStore) and isinstance(b, IgniteStore)
        await a.directory.index("streams", a_name)
        await b.directory.index("streams", b_name)  # a's copy of the bucket is behind now
        await a.directory.index("streams", later)
        assert await b.directory.listed("streams", "run-d/", "listing") == sorted(
            [a_name, b_name, later]
        )
        await b.directory.unindex("streams", a_name)
        a.directory.indexed.clear()  # as if a had forgotten: its copy still lists the name
        await a.directory.index("streams", a_name)
        assert a_name in await b.directory.listed("streams", "run-d/", "listing")


@pytest.mark.ignite
async def test_two_processes_racing_for_one_seq_get_one_winner_and_a_conflict(
    node: str,
) -> None:
    url = fresh_url(node)
    async with open_store(url) as a, open_store(url) as b:
        await a.append("s", 0, ["x"])
        await b.append("s", 1, ["from b"])  # b has learnt the end too
        await a.append("s", 2, ["from a"])
        # b still believes the stream ends at 2: its fast path loses, the checked path compares
        with pytest.raises(ConflictError) as caught:
            await b.append("s", 2, ["other"])
        assert (caught.value.seq, caught.value.stored) == (2, "from a")
        assert await b.append("s", 2, ["from a", "more"]) == 4
        assert await items_of(a, "s") == ["x", "from b", "from a", "more"]


@pytest.mark.ignite
async def test_another_process_sees_appends_by_polling(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as reader, open_store(url) as writer:
        assert await reader.wait("s", 0, timeout=0.01) is False
        waiting = asyncio.ensure_future(reader.wait("s", 0, timeout=5))
        await writer.append("s", 0, [1])
        assert await asyncio.wait_for(waiting, 6) is True
        assert await items_of(reader, "s") == [1]
        await writer.seal("s")
        assert (await reader.info("s")).sealed


@pytest.mark.ignite
async def test_reading_from_the_middle_of_a_long_stream_does_not_scan_it(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as writer:
        for first in range(0, 3000, 3):
            await writer.append("s", first, [first, first + 1, first + 2])
    async with open_store(url) as reader:
        assert isinstance(reader, IgniteStore)
        requests: list[int] = []
        real_get_all = reader.io.get_all

        async def counted(cache: str, keys: list[str], what: str) -> dict[str, Any]:
            requests.append(len(keys))
            return await real_get_all(cache, keys, what)

        reader.io.get_all = counted  # type: ignore[method-assign]
        assert await items_of(reader, "s", start=1999, stop=2002) == [1999, 2000, 2001]
        # 1000 segments: a few probes of the end from the hint (up to HINT_EVERY segments
        # behind: windows of 1, 4, 16, 64), one or two seeks, then the segments wanted;
        # not a walk over the stream
        assert len(requests) <= 8, requests
        assert sum(requests) <= 2 * HINT_EVERY, requests
        requests.clear()
        assert await items_of(reader, "s", start=2002, stop=2005) == [2002, 2003, 2004]
        assert len(requests) <= 2, requests  # a sequential reader finds its place at once


@pytest.mark.ignite
async def test_stream_names_and_keys_with_separators_and_nul_stay_distinct(
    store: IgniteStore,
) -> None:
    names = ["a\0x", "a\0y", "a|b", "a%7Cb", "a%b", "a"]
    for i, name in enumerate(names):
        await store.append(name, 0, [i])
        await store.meta_put("executions", name, i)
    for i, name in enumerate(names):
        assert await items_of(store, name) == [i]
        entry = await store.meta_get("executions", name)
        assert entry is not None
        assert entry.value == i
    assert [s.name for s in await store.streams(prefix="a")] == sorted(names)
    assert [k for k, _ in await store.meta_scan("executions", prefix="a%")] == ["a%7Cb", "a%b"]


@pytest.mark.ignite
async def test_listings_read_their_namespaces_directory_not_the_whole_cluster(node: str) -> None:
    async with open_store(fresh_url(node)) as crowded, open_store(fresh_url(node)) as store:
        for n in range(300):  # another namespace's metadata: never read by our listings
            await crowded.meta_put("executions", f"big/e-{n}", {"n": n})
        await store.meta_put("executions", "r1/a", {"n": 1})
        await store.meta_put("executions", "r2/b", {"n": 2})
        await store.append("r1/a", 0, [1])
        assert isinstance(store, IgniteStore)
        requests = record_requests(store)
        fetched: list[str] = []
        real_get_all = store.io.get_all

        async def recorded(cache: str, keys: list[str], what: str) -> dict[str, Any]:
            fetched.extend(keys)
            return await real_get_all(cache, keys, what)

        store.io.get_all = recorded  # type: ignore[method-assign]
        assert [key for key, _ in await store.meta_scan("executions", prefix="r1/")] == ["r1/a"]
        assert len(requests) == 2  # the run's bucket, then its entries
        requests.clear()
        assert [key for key, _ in await store.meta_scan("executions")] == ["r1/a", "r2/b"]
        assert len(requests) == 3  # the list of runs, their buckets, the entries
        assert [s.name for s in await store.streams()] == ["r1/a"]
        assert fetched and all(key.startswith(store.namespace + "|") for key in fetched)
        # our runs' buckets and entries (and a hint), however big the neighbour grows
        # + the probe of r1/a's end (with its trim record, docs/retention.md)
        # + the first listing's scan of the executions for streams an older perper left
        # unlisted (their buckets and entries again; once per process and prefix)
        assert len(fetched) <= 6 * DIRECTORY_SHARDS + 8
        fetched.clear()
        assert [s.name for s in await store.streams()] == ["r1/a"]
        assert len(fetched) <= 2 * DIRECTORY_SHARDS + 4  # the second one does not scan


@pytest.mark.ignite
async def test_a_name_listed_by_a_writer_that_died_before_writing_it_is_skipped(
    node: str,
) -> None:
    async with open_store(fresh_url(node)) as store:
        assert isinstance(store, IgniteStore)
        await store.directory.index("executions", "r/died")  # indexed, then the writer died
        await store.meta_put("executions", "r/kept", {"ok": True})
        assert [key for key, _ in await store.meta_scan("executions", prefix="r/")] == ["r/kept"]


@pytest.mark.ignite
async def test_writers_racing_to_list_names_in_one_run_lose_none(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as a, open_store(url) as b:

        async def create(store: LogStore, who: str) -> None:
            for n in range(25):
                await store.meta_put("leases", f"run/{who}-{n}", {"by": who})

        await asyncio.gather(create(a, "a"), create(b, "b"))
        async with open_store(url) as reader:
            listed = [key for key, _ in await reader.meta_scan("leases", prefix="run/")]
        assert listed == sorted(f"run/{who}-{n}" for who in "ab" for n in range(25))


@pytest.mark.ignite
async def test_a_namespace_of_another_layout_is_refused(node: str) -> None:
    url = fresh_url(node)
    async with open_store(url) as store:
        await store.head("s")
        assert isinstance(store, IgniteStore)
        assert store.io.conn is not None
        await store.io.conn.meta.put(f"{store.namespace}|format", b"perper-ignite/99")
    with pytest.raises(FormatError, match="perper-ignite/99"):
        async with open_store(url) as again:
            await again.head("s")


@pytest.mark.ignite
def test_a_store_opened_outside_any_loop_connects_in_the_loop_that_uses_it(node: str) -> None:
    store = open_store(fresh_url(node))
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(store.append("s", 0, [1, 2])) == 2
        assert loop.run_until_complete(store.head("s")) == 2
        loop.run_until_complete(store.close())
    finally:
        loop.close()


@pytest.mark.ignite
def test_a_store_outliving_its_event_loop_reconnects_in_the_next_one(node: str) -> None:
    store = open_store(fresh_url(node))
    asyncio.run(store.append("s", 0, [1, 2]))  # asyncio.run closes that loop
    assert asyncio.run(store.append("s", 2, [3])) == 3

    async def read_and_close() -> list[Any]:
        try:
            return await items_of(store, "s")
        finally:
            await store.close()

    assert asyncio.run(read_and_close()) == [1, 2, 3]
