"""Producer against every store kind: durability, keys, group commit, several producers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.errors import ConfigError, SealedError
from perper.store import LogStore, open_store
from perper.store.memory import MemoryStore
from tests.conftest import STORE_KINDS, store_url

STREAM = "shop/clicks"


async def stored(store: LogStore, stream: str = STREAM) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def segment_sizes(store: LogStore, stream: str = STREAM) -> list[int]:
    return [len(items) async for _, items in store.read_batches(stream)]


async def test_send_returns_consecutive_seqs_of_items_a_second_store_reads(
    store_kind: str, tmp_path: Path
) -> None:
    async with open_store(store_url(store_kind, tmp_path)) as store:
        async with perper.Producer(store, STREAM) as clicks:
            assert await clicks.send({"n": 0}, key="a") == 0
            assert await clicks.send({"n": 1}) == 1
            assert await clicks.send_many([{"n": 2}, {"n": 3}], keys=["c", None]) == [2, 3]
        if store_kind != "memory":
            async with open_store(store_url(store_kind, tmp_path)) as other:
                assert await stored(other) == [{"n": i} for i in range(4)]
        else:
            assert await stored(store) == [{"n": i} for i in range(4)]


async def test_a_key_the_stream_holds_appends_nothing_and_returns_the_stored_seq(
    store: LogStore,
) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        assert await clicks.send("first", key="k1") == 0
        assert await clicks.send("second", key="k2") == 1
        # Same key, another item: the key names the event, the stored item stays.
        assert await clicks.send("other", key="k1") == 0
        assert await clicks.send_many(["x", "y", "z"], keys=["k2", "k3", "k1"]) == [1, 2, 0]
    assert await stored(store) == ["first", "second", "y"]


async def test_a_key_repeated_within_one_batch_is_stored_once(store: LogStore) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        seqs = await clicks.send_many(["a", "b", "a2", "c"], keys=["a", "b", "a", None])
    assert seqs == [0, 1, 0, 2]
    assert await stored(store) == ["a", "b", "c"]


async def test_concurrent_sends_are_group_committed_into_one_segment(store: LogStore) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        seqs = await asyncio.gather(*(clicks.send(i, key=f"e{i}") for i in range(64)))
    assert sorted(seqs) == list(range(64))
    assert await segment_sizes(store) == [64]
    assert await stored(store) == list(range(64))


async def test_group_commits_hold_at_most_max_batch_items(store: LogStore) -> None:
    async with perper.Producer(store, STREAM, max_batch=10) as clicks:
        await asyncio.gather(*(clicks.send(i) for i in range(25)))
    assert await segment_sizes(store) == [10, 10, 5]


async def test_two_producers_on_one_stream_store_every_key_once(
    store_kind: str, tmp_path: Path
) -> None:
    url = store_url(store_kind, tmp_path)
    async with open_store(url) as first_store:
        second_store = first_store if store_kind == "memory" else open_store(url)
        try:
            one = perper.Producer(first_store, STREAM, max_batch=7)
            two = perper.Producer(second_store, STREAM, max_batch=5)
            keys = [f"evt-{i}" for i in range(100)]
            # Both send every key, interleaved, so each sees the other move the head.
            results = await asyncio.gather(
                *(one.send(k, key=k) for k in keys), *(two.send(k, key=k) for k in reversed(keys))
            )
        finally:
            if second_store is not first_store:
                await second_store.close()
        items = await stored(first_store)
    assert sorted(items) == sorted(keys)
    seq_of = {item: seq for seq, item in enumerate(items)}
    assert results[:100] == [seq_of[k] for k in keys]
    assert results[100:] == [seq_of[k] for k in reversed(keys)]


async def test_sealing_ends_readers_and_refuses_later_sends(store: LogStore) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        await clicks.send("last", key="x")
        await clicks.seal()
        assert (await store.info(STREAM)).sealed
        # A key already stored still answers: resending after a crash is harmless.
        assert await clicks.send("again", key="x") == 0
        with pytest.raises(SealedError, match="sealed at 1 items"):
            await clicks.send("new", key="y")


async def test_unencodable_items_fail_their_send_and_spare_the_others(store: LogStore) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        good = await clicks.send("ok", key="a")
        with pytest.raises(perper.EncodeError):
            await clicks.send({1, 2}, key="b")
        assert await clicks.send("ok2", key="b") == good + 1
    assert await stored(store) == ["ok", "ok2"]


async def test_a_key_whose_write_failed_is_stored_when_sent_again_after_other_keys(
    store: LogStore,
) -> None:
    # The key index takes a batch's keys in before the write (SQLite): a failed write must
    # take them out again, or a later send of the key would answer with a seq never stored.
    async with perper.Producer(store, STREAM) as clicks:
        assert await clicks.send("a", key="a") == 0
        with pytest.raises(perper.EncodeError):
            await clicks.send_many(["fine", {1, 2}], keys=["b", "c"])
        assert await clicks.send("d", key="d") == 1
        assert await clicks.send_many(["b", "c"], keys=["b", "c"]) == [2, 3]
    assert await stored(store) == ["a", "d", "b", "c"]


def test_bad_producer_arguments_are_refused_with_the_fix() -> None:
    store = open_store("memory://")
    with pytest.raises(ConfigError, match="name a stream"):
        perper.Producer(store, "")
    with pytest.raises(ConfigError, match="positive number"):
        perper.Producer(store, STREAM, max_batch=0)


async def test_keys_that_do_not_fit_the_items_are_refused(store: LogStore) -> None:
    clicks = perper.Producer(store, STREAM)
    with pytest.raises(ConfigError, match="2 items but 1 keys"):
        await clicks.send_many(["a", "b"], keys=["k"])
    with pytest.raises(ConfigError, match="a key is a str"):
        await clicks.send("a", key=7)  # type: ignore[arg-type]
    assert await stored(store) == []


async def test_an_unencodable_item_fails_only_its_own_concurrent_send(store: LogStore) -> None:
    async with perper.Producer(store, STREAM) as clicks:
        sends = [clicks.send(i, key=f"k{i}") for i in range(5)]
        sends.insert(2, clicks.send({1, 2}, key="bad"))
        results = await asyncio.gather(*sends, return_exceptions=True)
    assert isinstance(results[2], perper.EncodeError)
    assert sorted(r for r in results if isinstance(r, int)) == list(range(5))
    assert await stored(store) == list(range(5))


async def test_a_stream_an_execution_writes_refuses_producers(store: LogStore) -> None:
    await store.append("r/generator-0", 0, ["from the execution"], epoch=3)
    with pytest.raises(perper.FencedError, match="epoch 3"):
        await perper.Producer(store, "r/generator-0").send("from outside", key="k")
    assert await stored(store, "r/generator-0") == ["from the execution"]


@pytest.mark.parametrize(
    "shared_kind",  # memory:// lives in one process: nothing to share with a new one
    [
        pytest.param(kind, marks=[pytest.mark.ignite] if kind == "ignite" else [])
        for kind in STORE_KINDS
        if kind != "memory"
    ],
)
async def test_a_producer_in_a_new_process_knows_the_keys_stored_before(
    shared_kind: str, tmp_path: Path
) -> None:
    url = store_url(shared_kind, tmp_path)
    async with open_store(url) as first:
        await perper.Producer(first, STREAM).send_many(["a", "b", "c"], keys=["a", "b", "c"])
    async with open_store(url) as second:  # a fresh KeyIndex, caught up from the store
        seqs = await perper.Producer(second, STREAM).send_many(
            ["c", "d", "a"], keys=["c", "d", "a"]
        )
        assert seqs == [2, 3, 0]
        assert await stored(second) == ["a", "b", "c", "d"]


async def test_sqlite_writes_a_segment_and_its_keys_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perper.store import sqlite as sqlite_module

    url = f"sqlite:///{tmp_path / 'log.db'}"
    real_pack = sqlite_module.codec.pack

    def pack_failing_on_keys(value: Any, *, what: str = "value") -> bytes:
        if what == "keys":  # after the segment row is inserted, before its keys are
            raise RuntimeError("crash between the segment and its keys")
        return real_pack(value, what=what)

    async with open_store(url) as store:
        monkeypatch.setattr(sqlite_module.codec, "pack", pack_failing_on_keys)
        with pytest.raises(RuntimeError, match="crash between"):
            await store.append_keyed(STREAM, ["a"], ["k"])
        monkeypatch.setattr(sqlite_module.codec, "pack", real_pack)
    async with open_store(url) as store:
        assert await store.head(STREAM) == 0  # neither the segment nor the keys
        assert await store.append_keyed(STREAM, ["a"], ["k"]) == [0]
        assert await store.append_keyed(STREAM, ["again"], ["k"]) == [0]
        assert await stored(store) == ["a"]


class StuckStore(MemoryStore):
    """A store whose keyed writes never answer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def append_keyed(self, stream: str, items: Any, keys: Any) -> list[int]:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_cancelled_write_cancels_its_senders_instead_of_leaving_them_waiting() -> None:
    store = StuckStore()
    clicks = perper.Producer(store, STREAM)
    first = asyncio.ensure_future(clicks.send("a"))
    await store.entered.wait()
    second = asyncio.ensure_future(clicks.send("b"))  # queued behind the stuck write
    await asyncio.sleep(0)
    # What the loop does at shutdown: cancel the other tasks (here: the producer's writer).
    for task in asyncio.all_tasks() - {asyncio.current_task(), first, second}:
        task.cancel()
    for sender in (first, second):
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):  # a sender left waiting fails here instead
                await sender


async def test_a_writer_cancelled_between_writes_cancels_the_sends_queued_for_the_next() -> None:
    clicks = perper.Producer(MemoryStore(), STREAM)
    assert await clicks.send("a") == 0
    # The writer waits one turn for more sends: this one is queued for its next write.
    queued = clicks.send("b")
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()  # what the loop does at shutdown
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):  # a sender left waiting fails here instead
            await queued


class GatedStore(MemoryStore):
    """A store whose keyed writes wait for ``gate`` (a slow network, made deterministic)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def append_keyed(self, stream: str, items: Any, keys: Any) -> list[int]:
        self.entered.set()
        await self.gate.wait()
        return await super().append_keyed(stream, items, keys)


async def test_senders_cancelled_during_a_write_leave_the_others_their_seqs() -> None:
    store = GatedStore()
    clicks = perper.Producer(store, STREAM)
    sends = [asyncio.ensure_future(clicks.send(f"item-{i}", key=f"k{i}")) for i in range(6)]
    await store.entered.wait()  # all six are in the one write
    for cancelled in (sends[0], sends[2], sends[3], sends[5]):
        cancelled.cancel()
    store.gate.set()
    async with asyncio.timeout(5):  # a sender skipped by the resolving fails here
        assert await sends[1] == 1
        assert await sends[4] == 4
    assert all(sends[i].cancelled() for i in (0, 2, 3, 5))
    # Cancelling a sender does not unsend its item: a resend with its key finds it.
    assert await clicks.send("again", key="k3") == 3
    assert await stored(store) == [f"item-{i}" for i in range(6)]


class SecondWriteGatedStore(MemoryStore):
    """A store whose second keyed write waits for ``gate``; the others write at once."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[list[Any]] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def append_keyed(self, stream: str, items: Any, keys: Any) -> list[int]:
        self.writes.append(list(items))
        if len(self.writes) == 2:
            self.entered.set()
            await self.gate.wait()
        return await super().append_keyed(stream, items, keys)


async def test_a_send_made_while_a_send_many_writes_from_its_task_is_stored_after_it() -> None:
    # The committer that wrote "a" and "x" waits one turn for more sends. In that turn
    # one sender's send_many writes from its own task (nothing is queued) and the other
    # sender's next send is queued: the committer must leave it to the write after the
    # send_many's, not write it beside the send_many.
    store = SecondWriteGatedStore()
    clicks = perper.Producer(store, STREAM)

    async def many() -> list[int]:
        return [await clicks.send("a"), *await clicks.send_many(["b", "c"])]

    async def single() -> list[int]:
        return [await clicks.send("x"), await clicks.send("d")]

    senders = asyncio.gather(many(), single())
    await store.entered.wait()  # the send_many is writing from its own task
    for _ in range(5):
        await asyncio.sleep(0)
    assert store.writes == [["a", "x"], ["b", "c"]]
    store.gate.set()
    async with asyncio.timeout(5):
        assert await senders == [[0, 2, 3], [1, 4]]
    assert store.writes == [["a", "x"], ["b", "c"], ["d"]]
    assert await stored(store) == ["a", "x", "b", "c", "d"]


async def test_seal_waits_for_a_send_many_in_flight_in_another_task() -> None:
    store = GatedStore()
    clicks = perper.Producer(store, STREAM)
    sending = asyncio.ensure_future(clicks.send_many(list(range(100))))
    await store.entered.wait()  # the send_many is writing from its own task
    sealing = asyncio.ensure_future(clicks.seal())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not sealing.done()
    store.gate.set()
    assert await sending == list(range(100))
    await sealing
    info = await store.info(STREAM)
    assert info.sealed and info.head == 100


async def test_a_sqlite_keyed_append_sees_the_head_and_the_index_another_connection_wrote(
    tmp_path: Path,
) -> None:
    # Each connection plans at the head its last keyed append left: the other connection's
    # append (which moves the head) and index declaration (which does not) must be seen.
    import sqlite3

    from perper.store.index import normalize_index

    url = f"sqlite:///{tmp_path}/log.db"
    async with open_store(url) as one, open_store(url) as two:
        assert await one.append_keyed(STREAM, [{"n": 0}, {"n": 1}], ["a", "b"]) == [0, 1]
        assert await two.append_keyed(STREAM, [{"n": 2}], ["c"]) == [2]
        # one's guess (head 2) is stale: it reads the head and the key c stored at 2.
        assert await one.append_keyed(STREAM, [{"n": 9}, {"n": 3}], ["c", "d"]) == [2, 3]
        await two.declare_index(STREAM, normalize_index({"n": int}, where="test"))
        # The head did not move: one's guess holds, and the new item gets its index row.
        assert await one.append_keyed(STREAM, [{"n": 4}], ["e"]) == [4]
        assert await one.append_keyed(STREAM, [{"n": 5}], None) == [5]
        assert await stored(two) == [{"n": i} for i in range(6)]
    db = sqlite3.connect(tmp_path / "log.db")
    try:
        (stream_id,) = db.execute("SELECT id FROM streams WHERE name = ?", (STREAM,)).fetchone()
        rows = db.execute(f"SELECT n FROM stream_index_{stream_id} ORDER BY seq").fetchall()
    finally:
        db.close()
    assert [n for (n,) in rows] == list(range(6))
