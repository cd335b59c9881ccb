"""Shrinking a failing fault schedule to a minimal one (delta debugging, ddmin).

The seed stays fixed — the scheduler's choices, the workers, the runtime settings — and
only the fault schedule shrinks: subsets of its events are tried, and a subset is kept
when the run still fails with the same kind of violation. The result is 1-minimal:
removing any single remaining fault makes the failure go away. Each event is then
simplified where that keeps the failure (a crash restarts at once, latency shrinks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from simulator.faults import Crash, Fault, Latency, Pause
from simulator.world import SimulationResult


@dataclass(frozen=True)
class ShrinkResult:
    """A minimal failing schedule.

    Attributes:
        original: the schedule the seed drew.
        schedule: the minimal one that still fails the same way.
        result: the run with the minimal schedule.
        runs: how many simulations the search took.
    """

    original: tuple[Fault, ...]
    schedule: tuple[Fault, ...]
    result: SimulationResult
    runs: int

    def describe(self) -> str:
        lines = [f"shrunk {len(self.original)} faults to {len(self.schedule)} in {self.runs} runs:"]
        lines.extend("  " + fault.describe() for fault in self.schedule)
        if not self.schedule:
            lines.append("  (no fault at all: the failure does not need one)")
        return "\n".join(lines)


def ddmin(items: Sequence[Fault], fails: Callable[[Sequence[Fault]], bool]) -> list[Fault]:
    """Zeller's ddmin: a 1-minimal subsequence of ``items`` for which ``fails`` holds
    (``fails(items)`` must hold)."""
    current = list(items)
    n = 2
    while len(current) >= 2:
        size = len(current) // n
        chunks = (
            [current[i : i + size] for i in range(0, len(current), size)] if size else [current]
        )
        reduced = False
        for chunk in chunks:
            if fails(chunk):
                current, n, reduced = chunk, 2, True
                break
        if not reduced:
            for index in range(len(chunks)):
                complement = [f for j, c in enumerate(chunks) if j != index for f in c]
                if fails(complement):
                    current, n, reduced = complement, max(n - 1, 2), True
                    break
        if not reduced:
            if n >= len(current):
                break
            n = min(len(current), 2 * n)
    if len(current) == 1 and fails([]):
        return []
    return current


def one_minimal(items: Sequence[Fault], fails: Callable[[Sequence[Fault]], bool]) -> list[Fault]:
    """Drop single faults from ``items`` while ``fails`` still holds, until no single one
    can go: the result is 1-minimal (``fails(items)`` must hold)."""
    current = list(items)
    removed = True
    while removed and current:
        removed = False
        for index in range(len(current)):
            candidate = current[:index] + current[index + 1 :]
            if fails(candidate):
                current, removed = candidate, True
                break
    return current


def _simpler(fault: Fault) -> list[Fault]:
    if isinstance(fault, Crash) and fault.restart_after:
        return [replace(fault, restart_after=0.0)]
    if isinstance(fault, Latency) and (fault.rate < 1.0 or fault.delay):
        return [replace(fault, delay=0.0), replace(fault, rate=1.0, delay=0.0)]
    if isinstance(fault, Pause):
        return []
    return []


def shrink(
    schedule: Sequence[Fault],
    run: Callable[[Sequence[Fault]], SimulationResult],
    kind: str,
) -> ShrinkResult:
    """Shrink ``schedule`` while ``run(schedule)`` fails with a ``kind`` violation."""
    runs = 0
    last: dict[tuple[Fault, ...], SimulationResult] = {}

    def fails(candidate: Sequence[Fault]) -> bool:
        nonlocal runs
        key = tuple(candidate)
        if key not in last:
            runs += 1
            last[key] = run(key)
        result = last[key]
        return result.violation is not None and result.violation.kind == kind

    if not fails(schedule):
        raise ValueError("the schedule does not fail with a " + kind + " violation")
    minimal = ddmin(list(schedule), fails)
    for index in range(len(minimal)):
        for simpler in _simpler(minimal[index]):
            candidate = [*minimal[:index], simpler, *minimal[index + 1 :]]
            if fails(candidate):
                minimal = candidate
                break
    # Simplifying an event can make another one superfluous; and ddmin's chunking is only
    # 1-minimal when its last round reached single events. Removing single faults until
    # none can go makes the result 1-minimal whatever happened before.
    minimal = one_minimal(minimal, fails)
    final = tuple(minimal)
    fails(final)
    return ShrinkResult(tuple(schedule), final, last[final], runs)
