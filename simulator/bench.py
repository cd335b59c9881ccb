"""Speed of the simulator beside asyncio's own loop: the loop alone, whole seeds of
examples/basic.py beside the same run on a plain event loop, and seeds of a recorded
run of examples/clicks.py (``--log``) beside the same workload run on a plain loop."""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from perper.app import load_app
from perper.runtime import Runtime
from perper.runtime.settings import RuntimeSettings
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore
from simulator.campaign import Simulation
from simulator.loop import SimulatedLoop
from simulator.recorded import RecordedRun, load_recorded

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Workload = Callable[[], Coroutine[Any, Any, None]]


def _workload(tasks: int, rounds: int, timers: bool) -> Workload:
    """``tasks`` tasks that each yield ``rounds`` times (every 8th time on a 1 ms timer)."""

    async def worker(index: int) -> None:
        for i in range(rounds):
            if timers and i % 8 == index % 8:
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(tasks)))

    return main


def _best_rate(seconds: float, once: Callable[[], tuple[int, float]]) -> float:
    """The best units/s of repeated ``once()`` calls (each returns units, elapsed) for
    ``seconds``, at least one call."""
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        units, elapsed = once()
        best = max(best, units / elapsed)
        if time.perf_counter() >= deadline:
            return best


def _asyncio_runs_per_second(seconds: float, run: Workload) -> float:
    """The best runs/s of ``asyncio.run(run())`` over ``seconds``."""

    def once() -> tuple[int, float]:
        started = time.perf_counter()
        asyncio.run(run())
        return 1, time.perf_counter() - started

    return _best_rate(seconds, once)


def loop_steps_per_second(seconds: float = 1.0, tasks: int = 8, *, timers: bool = True) -> float:
    """Steps/s of :class:`SimulatedLoop` running ``tasks`` tasks that yield (and sleep)."""
    main = _workload(tasks, 2000, timers)

    def once() -> tuple[int, float]:
        loop = SimulatedLoop(1)
        started = time.perf_counter()
        loop.run_until_complete(main())
        elapsed = time.perf_counter() - started
        loop.close()
        return loop.steps, elapsed

    return _best_rate(seconds, once)


def asyncio_steps_per_second(seconds: float = 1.0, tasks: int = 8) -> float:
    """The baseline: asyncio's default loop on the timer-free workload, counted in the
    steps the simulated loop takes for it (the same callbacks, one by one)."""
    main = _workload(tasks, 2000, timers=False)
    counter = SimulatedLoop(1)
    counter.run_until_complete(main())
    steps = counter.steps
    counter.close()

    def once() -> tuple[int, float]:
        loop = asyncio.new_event_loop()
        started = time.perf_counter()
        loop.run_until_complete(main())
        elapsed = time.perf_counter() - started
        loop.close()
        return steps, elapsed

    return _best_rate(seconds, once)


def basic_seeds_per_second(seconds: float = 2.0, count: int = 100) -> tuple[float, float]:
    """(seeds/s, steps/s) for examples/basic.py with ``count`` items under crash faults."""
    app = load_app(EXAMPLES / "basic.py")
    simulation = Simulation(app, {"count": count}, kinds=("crash",))
    simulation.reference  # noqa: B018
    seeds = 0
    steps = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        result = simulation.run_seed(seeds)
        assert result.ok, result.describe()
        steps += result.steps
        seeds += 1
    elapsed = time.perf_counter() - started
    return seeds / elapsed, steps / elapsed


def basic_runs_per_second(seconds: float = 2.0, count: int = 100) -> float:
    """The baseline: whole runs/s of the same app on asyncio's loop and a MemoryStore, one
    worker, no faults (what a seed simulates, without the simulation)."""
    app = load_app(EXAMPLES / "basic.py")

    async def run() -> None:
        result = await Runtime(MemoryStore(), app).run("bench", {"count": count})
        result.raise_on_failure()

    return _asyncio_runs_per_second(seconds, run)


def basic_runs_per_second_under_seed_settings(seconds: float = 2.0, count: int = 100) -> float:
    """A diagnostic beside the baseline: runs/s of the same app on asyncio's loop and a
    MemoryStore, one worker, no faults, each run under the runtime settings a seed draws
    (seeds 0, 1, 2, ... in turn, as :func:`basic_seeds_per_second` runs them). What a
    seed costs beyond this is the simulation's own (workers, crashes, checkers, loop);
    up to it, it is the runtime's work under the drawn batch sizes and cadences."""
    app = load_app(EXAMPLES / "basic.py")
    simulation = Simulation(app, {"count": count}, kinds=("crash",))

    async def run(settings: RuntimeSettings) -> None:
        result = await Runtime(MemoryStore(), app, settings=settings).run("bench", {"count": count})
        result.raise_on_failure()

    runs = 0
    started = time.perf_counter()
    while True:
        asyncio.run(run(simulation.scenario(runs).settings))
        runs += 1
        if time.perf_counter() - started >= seconds:
            return runs / (time.perf_counter() - started)


def record_clicks(path: Path, count: int = 10_000) -> Path:
    """Record a real run of examples/clicks.py into the SQLite log ``path``, fed ``count``
    clicks by examples/clicks_producer.py (run ``shop``, sealed), on asyncio's loop."""
    spec = importlib.util.spec_from_file_location(
        "clicks_producer", EXAMPLES / "clicks_producer.py"
    )
    assert spec is not None and spec.loader is not None
    producer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(producer)
    app = load_app(EXAMPLES / "clicks.py")

    async def record() -> None:
        async with SQLiteStore(path) as store:
            run = asyncio.ensure_future(Runtime(store, app).run("shop", {}))
            await producer.produce(f"sqlite:///{path}", "shop", 1, count, seal=True)
            (await run).raise_on_failure()

    asyncio.run(record())
    return path


def recorded_seeds_per_second(
    recorded: RecordedRun, seconds: float = 2.0, *, app_path: Path = EXAMPLES / "clicks.py"
) -> float:
    """Seeds/s of ``--log`` over ``recorded`` under crash faults (at least one seed)."""
    simulation = Simulation(load_app(app_path), kinds=("crash",), recorded=recorded)
    simulation.reference  # noqa: B018
    seeds = 0
    started = time.perf_counter()
    while True:
        result = simulation.run_seed(seeds)
        assert result.ok, result.describe()
        seeds += 1
        if time.perf_counter() - started >= seconds:
            return seeds / (time.perf_counter() - started)


def recorded_runs_per_second(
    recorded: RecordedRun, seconds: float = 2.0, *, app_path: Path = EXAMPLES / "clicks.py"
) -> float:
    """The baseline: whole runs/s of the recorded workload on asyncio's loop and a
    MemoryStore, one worker, no faults, its ingest streams written before it starts."""
    app = load_app(app_path)

    async def run() -> None:
        store = MemoryStore()
        for stream, feed in recorded.feeds.items():
            head = 0
            for batch in feed.batches:
                head = await store.append(stream, head, list(batch))
            if feed.sealed:
                await store.seal(stream)
        result = await Runtime(store, app).run(recorded.run, recorded.params)
        result.raise_on_failure()

    return _asyncio_runs_per_second(seconds, run)


def run_bench(seconds: float = 2.0, *, log_items: int = 10_000) -> list[str]:
    steps = loop_steps_per_second(seconds)
    plain_steps = loop_steps_per_second(seconds, timers=False)
    asyncio_steps = asyncio_steps_per_second(seconds)
    seeds, seed_steps = basic_seeds_per_second(seconds)
    runs = basic_runs_per_second(seconds)
    drawn_runs = basic_runs_per_second_under_seed_settings(seconds)
    with tempfile.TemporaryDirectory(prefix="perper-bench-") as folder:
        log = record_clicks(Path(folder) / "clicks.db", log_items)
        recorded = load_recorded(log, load_app(EXAMPLES / "clicks.py"))
    log_seeds = recorded_seeds_per_second(recorded, seconds)
    log_runs = recorded_runs_per_second(recorded, seconds)
    return [
        f"loop, 8 tasks with sleep(0) and timers   {steps:>12,.0f} steps/s",
        f"loop, 8 tasks with sleep(0) only         {plain_steps:>12,.0f} steps/s",
        f"asyncio's loop, the same sleep(0) tasks  {asyncio_steps:>12,.0f} steps/s",
        f"ratio simulated / asyncio                {plain_steps / asyncio_steps:>12.2f}x",
        f"examples/basic.py count=100, crash faults{seeds:>12,.1f} seeds/s per process "
        f"({seed_steps:,.0f} steps/s with the runtime)",
        f"the same run on asyncio, no faults       {runs:>12,.1f} runs/s",
        f"ratio seeds / runs                       {seeds / runs:>12.2f}x",
        f"diagnostic: runs under each seed's drawn settings{drawn_runs:>7,.1f} runs/s "
        f"(seeds / these {seeds / drawn_runs:.2f}x)",
        f"--log examples/clicks.py {log_items:,} items, crash{log_seeds:>9,.1f} seeds/s per process",
        f"the same workload on asyncio, no faults  {log_runs:>12,.1f} runs/s",
        f"ratio log seeds / runs                   {log_seeds / log_runs:>12.2f}x",
    ]
