"""Shrinking a failing fault schedule: the result is 1-minimal whatever the failure."""

from __future__ import annotations

from collections.abc import Sequence

import hypothesis.strategies as st
from hypothesis import given, settings

from perper.runtime import RuntimeSettings
from simulator.checkers import Violation, ViolationKind
from simulator.faults import Crash, Fault, Scenario
from simulator.shrink import shrink
from simulator.world import SimulationResult

SCENARIO = Scenario(
    seed=0,
    workers=2,
    kinds=("crash",),
    settings=RuntimeSettings(
        lease_ttl=1.0, batch_size=5, flush_delay=0.01, checkpoint_every=3, poll_interval=0.02
    ),
    heal_at=0.0,
)


def crashes(count: int) -> tuple[Fault, ...]:
    return tuple(Crash("crash", step % 2, step, 0.0) for step in range(count))


def outcome(failed: bool) -> SimulationResult:
    violation = Violation(ViolationKind.OUTPUT_MISMATCH, "planted") if failed else None
    return SimulationResult(seed=0, scenario=SCENARIO, violation=violation)


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=12),
    failing=st.sets(st.frozensets(st.integers(min_value=0, max_value=11)), max_size=8),
)
def test_no_single_fault_can_be_removed_from_a_shrunk_schedule_and_still_fail(
    count: int, failing: set[frozenset[int]]
) -> None:
    # The run fails when the schedule holds every step of one of the failing sets (an
    # arbitrary, not necessarily monotone, family), and always with all faults.
    schedule = crashes(count)

    def fails(candidate: Sequence[Fault]) -> bool:
        steps = frozenset(f.step for f in candidate if isinstance(f, Crash))
        return len(candidate) == count or any(s and s <= steps for s in failing)

    result = shrink(schedule, lambda c: outcome(fails(c)), "output-mismatch")
    assert fails(result.schedule)
    for index in range(len(result.schedule)):
        smaller = result.schedule[:index] + result.schedule[index + 1 :]
        assert not fails(smaller), (result.schedule, index)


def test_a_failure_one_crash_causes_shrinks_to_that_crash_out_of_eleven() -> None:
    schedule = crashes(11)
    culprit = schedule[7]
    result = shrink(schedule, lambda c: outcome(culprit in c), "output-mismatch")
    assert result.schedule == (culprit,)


def test_a_fault_that_simplifying_another_made_superfluous_is_removed_too() -> None:
    # Crash 0 with a delayed restart fails only together with crash 1; restarted at once
    # it fails alone. ddmin keeps both, simplification then makes crash 1 removable.
    slow, other = Crash("crash", 0, 3, 0.5), Crash("crash", 1, 9, 0.5)
    fast = Crash("crash", 0, 3, 0.0)

    def fails(candidate: Sequence[Fault]) -> bool:
        return fast in candidate or (slow in candidate and other in candidate)

    result = shrink((slow, other), lambda c: outcome(fails(c)), "output-mismatch")
    assert result.schedule == (fast,)
