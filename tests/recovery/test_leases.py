"""Leases, fencing and checkpoint-mode resumption inside the runtime, on every store kind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perper
from perper.errors import FencedError
from perper.runtime import Runtime
from perper.runtime.leases import Leases
from perper.runtime.settings import Boundary, RuntimeHooks, RuntimeSettings
from perper.store import LogStore


async def test_only_one_worker_holds_a_lease_until_it_expires(store: LogStore) -> None:
    first = Leases(store, "w1", ttl=0.2)
    second = Leases(store, "w2", ttl=0.2)
    assert await first.claim("r/x-0") == 1
    assert await second.claim("r/x-0") is None  # first sighting starts the clock
    assert await first.renew("r/x-0", 1)
    await asyncio.sleep(0.1)
    assert await second.claim("r/x-0") is None  # it was renewed: a new beat, a new clock
    await asyncio.sleep(0.25)
    assert await second.claim("r/x-0") == 2  # no beat for a whole ttl: expired
    assert not await first.renew("r/x-0", 1)  # the old owner learns it lost it


async def test_a_released_lease_is_claimed_at_once_with_a_higher_epoch(store: LogStore) -> None:
    first = Leases(store, "w1", ttl=60)
    assert await first.claim("r/x-0") == 1
    await first.release("r/x-0", 1)
    assert await Leases(store, "w2", ttl=60).claim("r/x-0") == 2


async def test_a_stale_owner_cannot_write_once_the_new_owner_has(store: LogStore) -> None:
    await store.append("r/x-0", 0, ["a"], epoch=1)
    await store.append("r/x-0", 1, ["b"], epoch=2)
    with pytest.raises(FencedError):
        await store.append("r/x-0", 2, ["c"], epoch=1)


counter = perper.App("counter")
delivered: list[int] = []


@counter.stream(recovery="checkpoint", checkpoint_every=10)
async def running_sum(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        delivered.append(number)
        ctx.state["sum"] = ctx.state.get("sum", 0) + number
        yield ctx.state["sum"]


@counter.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@counter.launcher
async def counter_main(ctx: perper.Context, count: int = 100):
    await ctx.start(running_sum, await ctx.start(numbers, count=count))


async def test_checkpoint_mode_resumes_from_the_checkpoint_not_the_start(store: LogStore) -> None:
    delivered.clear()
    crash_after = 57

    class Crash(BaseException):
        pass

    def crash(execution: str, boundary: Boundary, position: int) -> None:
        if (execution, boundary, position) == ("c/running_sum-1", Boundary.ITEM, crash_after):
            raise Crash()

    first = Runtime(
        store,
        counter,
        settings=RuntimeSettings(batch_size=5, lease_ttl=0.2),
        hooks=RuntimeHooks(on_boundary=crash),
        worker_id="w1",
    )
    task = asyncio.ensure_future(first.run("c", {"count": 100}))
    while not any(
        isinstance(t.exception(), Crash)
        for t, _ in first._tasks.values()
        if t.done() and not t.cancelled()
    ):
        await asyncio.sleep(0.01)
    task.cancel()  # the rest of the worker goes away too (its lease on the sum stays)
    with pytest.raises(asyncio.CancelledError):
        await task
    checkpoint = await store.meta_get("checkpoints", "c/running_sum-1")
    assert checkpoint is not None
    assert [slot[:2] for slot in checkpoint.value["positions"]] == [["c/numbers-0", 50]]
    assert checkpoint.value["state"] == {"sum": sum(range(50))}

    delivered.clear()
    second = Runtime(store, counter, worker_id="w2", lease_ttl=0.2)
    result = await second.run("c", {"count": 100})
    assert result.ok
    assert delivered[0] == 50  # resumed at the checkpointed position
    sums = [item async for _, item in store.read("c/running_sum-1")]
    assert sums == [sum(range(i + 1)) for i in range(100)]
    lease = await store.meta_get("leases", "c/running_sum-1")
    assert lease is not None and lease.value["epoch"] == 2 and lease.value["owner"] is None


async def test_a_worker_that_lost_its_lease_stops_writing(store: LogStore) -> None:
    app = perper.App("slow")
    gate = asyncio.Event()

    @app.stream
    async def gen(ctx: perper.Context):
        yield 1
        await gate.wait()
        yield 2

    @app.launcher
    async def main(ctx: perper.Context):
        await ctx.start(gen)

    old = Runtime(store, app, worker_id="old", lease_ttl=1.0, flush_delay=0.0)
    task = asyncio.ensure_future(old.run("s"))
    while await store.head("s/gen-0") < 1:
        await asyncio.sleep(0.01)
    # another worker takes the execution over (as if old had been partitioned away)
    # (old's renewer keeps bumping the beat, so the takeover retries its compare-and-set)
    while True:
        entry = await store.meta_get("leases", "s/gen-0")
        assert entry is not None and entry.value["owner"] == "old"
        taken: dict[str, Any] = {"owner": "new", "epoch": entry.value["epoch"] + 1, "beat": 0}
        if await store.meta_cas("leases", "s/gen-0", taken, version=entry.version):
            break
    await store.append("s/gen-0", 1, [2], epoch=taken["epoch"])
    gate.set()
    new = Leases(store, "new", ttl=1.0)
    for _ in range(6):  # the new owner stays alive, so old cannot take it back
        assert await new.renew("s/gen-0", taken["epoch"])
        await asyncio.sleep(0.05)
    assert [item async for _, item in store.read("s/gen-0")] == [1, 2]
    info = await store.info("s/gen-0")
    assert not info.sealed and info.epoch == taken["epoch"]  # old's seal was refused
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
