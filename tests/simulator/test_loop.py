"""The deterministic event loop: virtual time, seeded choices, owners, failure modes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading

import pytest

from simulator.loop import (
    ROOT,
    Deadlock,
    Owner,
    SimulatedLoop,
    SimulationRefused,
    StepBudgetExceeded,
    run_simulated,
)

from .conftest import EXAMPLES
from .conftest import ROOT as REPO


async def _interleaving(log: list[str]) -> None:
    async def worker(name: str) -> None:
        for i in range(5):
            log.append(f"{name}{i}")
            await asyncio.sleep(0 if i % 2 else 0.001)

    await asyncio.gather(*(worker(name) for name in "abcd"))


def _trace(seed: int) -> tuple[str, list[str]]:
    log: list[str] = []
    loop = SimulatedLoop(seed, trace=True)
    try:
        loop.run_until_complete(_interleaving(log))
        return loop.trace_hash, log
    finally:
        loop.close()


def test_the_same_seed_gives_the_same_trace_and_interleaving() -> None:
    assert _trace(7) == _trace(7)


def test_different_seeds_give_different_traces() -> None:
    traces = {_trace(seed)[0] for seed in range(10)}
    assert len(traces) == 10


def test_the_trace_hash_is_the_same_across_processes_and_hash_seeds() -> None:
    hashes = set()
    for hash_seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "simulator",
                "run",
                str(EXAMPLES / "basic.py"),
                "--seed",
                "3",
                "--trace",
                "--param",
                "count=30",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        ).stdout
        line = next(line for line in out.splitlines() if "trace hash" in line)
        hashes.add(line.split()[-1])
    assert len(hashes) == 1 and len(next(iter(hashes))) == 64


def test_virtual_time_jumps_to_the_next_timer() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        await asyncio.wait_for(asyncio.sleep(10), timeout=20)
        return loop.time()

    assert run_simulated(main()) == 3610.0


def test_a_deadlock_names_each_stuck_tasks_await_site() -> None:
    async def stuck_forever(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> None:
        event = asyncio.Event()
        await asyncio.gather(stuck_forever(event), stuck_forever(event))

    with pytest.raises(Deadlock) as raised:
        run_simulated(main())
    assert "nothing is runnable and no timer is pending" in str(raised.value)
    assert sum("stuck_forever" in site for site in raised.value.sites) == 2
    assert all("test_loop.py" in site or "locks.py" in site for site in raised.value.sites)


def test_a_livelock_exhausts_the_step_budget() -> None:
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    with pytest.raises(StepBudgetExceeded, match="step budget of 1000 steps") as raised:
        run_simulated(spin(), step_budget=1000)
    assert any("spin" in site for site in raised.value.sites)


@pytest.mark.parametrize("what", ["thread", "executor", "threadsafe", "socket"])
def test_threads_sockets_and_other_thread_callbacks_are_refused_clearly(what: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        if what == "thread":
            threading.Thread(target=print).start()
        elif what == "executor":
            await asyncio.to_thread(print)
        elif what == "threadsafe":
            loop.call_soon_threadsafe(print)
        else:
            await asyncio.open_connection("127.0.0.1", 9)

    with pytest.raises(SimulationRefused, match="simulat"):
        run_simulated(main())


def test_a_thread_started_outside_the_simulation_still_works() -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.set)
    thread.start()
    thread.join()
    assert done.is_set() and socket.socket is not None


def test_a_killed_owner_runs_nothing_more_not_even_finally() -> None:
    ran: list[str] = []
    loop = SimulatedLoop(0)
    victim = Owner("victim")

    async def doomed() -> None:
        try:
            ran.append("start")
            await asyncio.sleep(1)
            ran.append("after sleep")
        finally:
            ran.append("finally")

    async def main() -> None:
        loop.spawn(victim, doomed())
        await asyncio.sleep(0.5)
        loop.kill(victim)
        await asyncio.sleep(2)

    loop.run_until_complete(main())
    assert ran == ["start"]
    loop.close()


def test_a_paused_owner_resumes_where_it_stopped_and_its_clock_went_on() -> None:
    loop = SimulatedLoop(0)
    sleeper = Owner("sleeper", offset=100.0, rate=2.0)
    seen: list[float] = []

    async def tick() -> None:
        for _ in range(3):
            await asyncio.sleep(1.0)  # one second of the owner's (fast) clock
            seen.append(asyncio.get_running_loop().time())

    async def main() -> None:
        task = loop.spawn(sleeper, tick())
        await asyncio.sleep(0.25)
        loop.pause(sleeper)
        await asyncio.sleep(5)
        loop.resume(sleeper)
        await task

    loop.run_until_complete(main())
    loop.close()
    # ticks due at virtual 0.5 (paused then), 1.0 ... the first runs at resume (t=5.25)
    assert seen[0] == 100.0 + 2.0 * 5.25
    assert seen[1] - seen[0] == pytest.approx(1.0)


@pytest.mark.parametrize(("offset", "rate"), [(-7.373, 1.0), (-52.545, 0.764), (3.1, 1.06)])
def test_a_deadline_on_a_skewed_clock_has_passed_when_its_timer_runs(
    offset: float, rate: float
) -> None:
    loop = SimulatedLoop(0, step_budget=10_000)
    skewed = Owner("skewed", offset=offset, rate=rate)
    late: list[float] = []

    async def wait_until(deadline: float) -> None:
        # Re-wait for whatever is left, as code with a deadline does: it must not spin.
        here = asyncio.get_running_loop()
        while (left := deadline - here.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await asyncio.Event().wait()
            late.append(here.time() - deadline)

    async def waits() -> None:
        here = asyncio.get_running_loop()
        for step in range(200):
            await asyncio.sleep(step * 0.0137 % 0.9)
            await wait_until(here.time() + 1.0)

    async def main() -> None:
        await loop.spawn(skewed, waits())

    loop.run_until_complete(main())
    loop.close()
    assert late and all(lateness >= 0 for lateness in late)


def test_a_simulation_can_run_inside_a_running_event_loop() -> None:
    async def outer() -> int:
        async def inner() -> int:
            await asyncio.sleep(5)
            return 42

        return run_simulated(inner())

    assert asyncio.run(outer()) == 42


def test_the_root_owner_is_never_paused_or_killed() -> None:
    assert ROOT.alive and not ROOT.paused


class _CountingFinaliser(SimulatedLoop):
    """Counts the async generators left for the loop's finaliser."""

    finalised: list[str]

    def _asyncgen_finalizer(self, agen: object) -> None:
        self.finalised.append(getattr(agen, "__qualname__", "?"))
        super()._asyncgen_finalizer(agen)


def test_a_read_pass_up_to_the_head_leaves_no_store_scan_to_the_loops_finaliser() -> None:
    from perper.store.memory import MemoryStore

    async def main() -> list[list[int]]:
        store = MemoryStore()
        await store.append("s", 0, [1, 2])
        await store.append("s", 2, [3])
        head = await store.head("s")
        return [items async for _, items in store.read_batches("s", start=0, stop=head)]

    loop = _CountingFinaliser(0)
    loop.finalised = []
    try:
        assert loop.run_until_complete(main()) == [[1, 2], [3]]
    finally:
        loop.close()
    assert loop.finalised == []


def test_a_lazy_random_draws_what_random_seeded_with_the_same_text_draws() -> None:
    import random

    from simulator.world import LazyRandom

    plain, lazy = (
        random.Random("perper-simulator/7/store/w0"),
        LazyRandom("perper-simulator/7/store/w0"),
    )
    assert [lazy.random() for _ in range(3)] == [plain.random() for _ in range(3)]
    assert lazy.randbytes(16) == plain.randbytes(16)
    assert lazy.randrange(1000) == plain.randrange(1000)
    assert lazy.getstate() == plain.getstate()
    fresh = LazyRandom("perper-simulator/7/store/w0")
    assert fresh.getstate() == random.Random("perper-simulator/7/store/w0").getstate()
