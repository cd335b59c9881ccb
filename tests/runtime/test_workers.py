"""Workers sharing a store: the registry, and new runs spread over the idle workers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from perper.app import load_app
from perper.runtime import Runtime
from perper.runtime.ids import DONE
from perper.runtime.workers import WORKERS_TABLE, registry_key
from perper.store import LogStore
from tests.conftest import EXAMPLES

basic = load_app(EXAMPLES / "basic.py")
TTL = 0.4


async def until(condition: Callable[[], Awaitable[bool]], *, within: float = 20.0) -> None:
    async with asyncio.timeout(within):
        while not await condition():
            await asyncio.sleep(0.01)


async def runs_done(store: LogStore, names: list[str]) -> bool:
    for name in names:
        entry = await store.meta_get("runs", name)
        if entry is None or entry.value["status"] != DONE:
            return False
    return True


async def work_on(store: LogStore, workers: list[Runtime], runs: int) -> list[str]:
    """Start ``workers``, wait until they see each other, add ``runs`` runs, wait for them."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.work(stop=stop)) for worker in workers]
    ids = sorted(worker.worker_id for worker in workers)

    async def joined() -> bool:
        return all(worker.registry.live == ids for worker in workers)

    try:
        await until(joined)
        names = [f"r{i}" for i in range(runs)]
        for name in names:
            await workers[0].prepare_run(name, {"count": 10})
        await until(lambda: runs_done(store, names))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return names


async def test_two_idle_workers_take_new_runs_in_turn_instead_of_the_first_taking_all(
    store: LogStore,
) -> None:
    workers = [Runtime(store, basic, lease_ttl=TTL, worker_id=f"w{i}") for i in range(2)]
    await work_on(store, workers, 6)
    # 6 runs of 4 executions: each worker starts 3 runs and their children.
    assert [worker.registry.ran for worker in workers] == [12, 12]


async def test_a_stopped_worker_says_so_and_what_it_ran_in_its_presence_lease(
    store: LogStore,
) -> None:
    worker = Runtime(store, basic, lease_ttl=TTL, worker_id="w0")
    await work_on(store, [worker], 2)
    entry = await store.meta_get(WORKERS_TABLE, registry_key("basic", "w0"))
    assert entry is not None
    assert entry.value["owner"] is None and entry.value["ran"] == 8


async def test_runs_meant_for_a_worker_that_is_gone_are_taken_once_it_is_seen_dead(
    store: LogStore,
) -> None:
    # A presence lease nobody renews: counted as live until it has not changed for a ttl.
    gone = {"owner": "w9", "epoch": 1, "beat": 1, "ran": 0}
    await store.meta_cas(WORKERS_TABLE, registry_key("basic", "w9"), gone, version=0)
    worker = Runtime(store, basic, lease_ttl=TTL, worker_id="w0")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.work(stop=stop))
    try:
        await until(lambda: asyncio.sleep(0, worker.registry.live == ["w0", "w9"]))
        names = ["r0", "r1"]  # r1 is w9's by rank
        for name in names:
            await worker.prepare_run(name, {"count": 10})
        await until(lambda: runs_done(store, names))
        assert worker.registry.live == ["w0"]
    finally:
        stop.set()
        await task
    assert worker.registry.ran == 8


async def test_a_worker_bound_to_one_run_is_no_peer_new_runs_are_spread_over(
    store: LogStore,
) -> None:
    result = await Runtime(store, basic, lease_ttl=TTL, worker_id="w0").run("solo", {"count": 10})
    assert result.ok
    assert await store.meta_scan(WORKERS_TABLE, prefix=registry_key("basic", "")) == []
