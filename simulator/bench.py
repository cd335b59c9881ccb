"""Speed of the simulator: the loop alone, and whole seeds of examples/basic.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from perper.app import load_app
from simulator.campaign import Simulation
from simulator.loop import SimulatedLoop

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def loop_steps_per_second(seconds: float = 1.0, tasks: int = 8) -> float:
    """Steps/s of :class:`SimulatedLoop` running ``tasks`` tasks that yield and sleep."""

    async def worker(index: int, rounds: int) -> None:
        for i in range(rounds):
            if i % 8 == index % 8:
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)

    async def main(rounds: int) -> None:
        await asyncio.gather(*(worker(i, rounds) for i in range(tasks)))

    rounds = 2000
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        loop = SimulatedLoop(1)
        started = time.perf_counter()
        loop.run_until_complete(main(rounds))
        elapsed = time.perf_counter() - started
        best = max(best, loop.steps / elapsed)
        loop.close()
    return best


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


def run_bench(seconds: float = 2.0) -> list[str]:
    steps = loop_steps_per_second(seconds)
    seeds, seed_steps = basic_seeds_per_second(seconds)
    return [
        f"loop: {steps:,.0f} scheduling steps/s (8 tasks, sleep(0) and timers)",
        f"examples/basic.py count=100, crash faults: {seeds:,.1f} seeds/s per process "
        f"({seed_steps:,.0f} steps/s with the runtime)",
    ]
