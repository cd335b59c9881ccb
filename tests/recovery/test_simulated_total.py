"""Checkpoint-mode apps that work outside their input loops, under the simulator: issue
9's ``total`` (a sum yielded after the loop) and ``resumable`` (a prologue that yields,
records an effect and starts a stream, a loop left with break, a second read, an
epilogue) survive every fault kind and a crash at every scheduling step."""

from __future__ import annotations

from pathlib import Path

import pytest

from perper.app import load_app
from simulator import Simulation
from simulator.faults import FAULT_KINDS

APPS = Path(__file__).resolve().parent.parent / "simulator" / "apps"


@pytest.mark.parametrize("app", ["total.py", "resumable.py"])
def test_the_app_passes_300_seeds_with_every_fault_kind(app: str) -> None:
    simulation = Simulation(load_app(APPS / app), kinds=FAULT_KINDS)
    result = simulation.run_seeds(range(300))
    assert len(result.outcomes) == 300
    result.raise_on_failure()


@pytest.mark.parametrize("app", ["total.py", "resumable.py"])
def test_the_app_recovers_from_a_crash_at_every_scheduling_step(app: str) -> None:
    result = Simulation(load_app(APPS / app)).sweep()
    assert len(result.outcomes) > 20
    result.raise_on_failure()
