"""Taking over a dead worker's executions: when the work loop polls while their leases
expire, and what an idle poll costs (no cancellation per poll)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perper.app import load_app
from perper.runtime import Runtime
from perper.store.memory import MemoryStore
from simulator.loop import SimulatedLoop
from tests.conftest import EXAMPLES

basic = load_app(EXAMPLES / "basic.py")

TTL = 1.0


class CountingTask(asyncio.Task[Any]):
    """A task that counts the cancellations asked of it."""

    cancels = 0

    def cancel(self, msg: Any = None) -> bool:
        self.cancels += 1
        return super().cancel(msg)


def take_over(monkeypatch: pytest.MonkeyPatch) -> tuple[float, list[float], CountingTask, int]:
    """A run whose launcher's lease a worker that died holds; another worker runs it on
    the simulated loop. Returns when it started, when it took the lease, its task and
    how many polls it made."""
    store = MemoryStore()
    loop = SimulatedLoop(0)
    taken: list[float] = []
    polls = 0

    async def main() -> tuple[float, CountingTask]:
        dead = Runtime(store, basic, worker_id="dead", lease_ttl=TTL)
        await dead.prepare_run("r", {"count": 3})
        assert await dead.leases.claim("r/main") == 1  # and it never renews it
        taker = Runtime(store, basic, worker_id="taker", lease_ttl=TTL, poll_interval=0.02)
        cas = store.meta_cas
        step = taker._step

        async def watching(table: str, key: str, value: Any, *, version: int) -> int | None:
            done = await cas(table, key, value, version=version)
            if done and (table, key) == ("leases", "r/main") and value["owner"] == "taker":
                taken.append(asyncio.get_running_loop().time())
            return done

        async def counting(only_run: str | None) -> Any:
            nonlocal polls
            polls += 1
            return await step(only_run)

        monkeypatch.setattr(store, "meta_cas", watching)
        monkeypatch.setattr(taker, "_step", counting)
        start = asyncio.get_running_loop().time()
        task = CountingTask(taker.run("r", {"count": 3}), loop=asyncio.get_running_loop())
        result = await task
        assert result.ok, str(result)
        return start, task

    try:
        start, task = loop.run_until_complete(main())
    finally:
        loop.close()
    return start, taken, task, polls


def test_a_dead_workers_lease_is_taken_once_it_counts_as_expired_not_at_a_later_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start, taken, _, polls = take_over(monkeypatch)
    # First seen at the first poll (the start); expired a ttl of the taker's loop time
    # later, and taken then -- the backoff alone (0.04, 0.08, ... capped at ttl/2) would
    # have polled next at 1.1 s.
    assert taken, "the lease was never taken"
    assert TTL <= taken[0] - start <= TTL + 1e-3
    assert polls >= 5  # it did poll meanwhile (a release would have been seen)


def test_an_idle_workers_polls_cancel_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, task, polls = take_over(monkeypatch)
    assert polls >= 5
    # Each idle poll waits on the wake event under a timer that sets it, not under
    # asyncio.timeout (a cancellation and a TimeoutError through the wait per poll).
    assert task.cancels == 0


async def test_a_lease_seen_held_is_due_a_ttl_after_and_forgotten_once_not_tried() -> None:
    store = MemoryStore()
    dead = Runtime(store, basic, worker_id="dead", lease_ttl=TTL)
    await dead.prepare_run("r", {"count": 3})
    assert await dead.leases.claim("r/main") == 1
    idle = Runtime(store, basic, worker_id="idle", lease_ttl=TTL)
    assert idle.leases.due() is None
    now = asyncio.get_running_loop().time()
    assert await idle.leases.claim("r/main") is None  # held: seen now
    due = idle.leases.due()
    assert due is not None and now <= due - TTL <= asyncio.get_running_loop().time()
    idle.leases.keep_only({"r/main"})
    assert idle.leases.due() == due
    # An execution the loop no longer tries (finished, or running here) is no reason
    # to wake: a stale sighting would make every later poll due at once.
    idle.leases.keep_only(set())
    assert idle.leases.due() is None
