"""Issue 9's ``total`` app under the simulator: a checkpoint-mode sum yielded after its
input loop survives every fault, and every crash point of a short run."""

from __future__ import annotations

from pathlib import Path

from perper.app import load_app
from simulator import Simulation
from simulator.faults import FAULT_KINDS

APP = Path(__file__).resolve().parent.parent / "simulator" / "apps" / "total.py"


def test_the_total_app_passes_300_seeds_with_every_fault_kind() -> None:
    simulation = Simulation(load_app(APP), kinds=FAULT_KINDS)
    result = simulation.run_seeds(range(300))
    assert len(result.outcomes) == 300
    result.raise_on_failure()


def test_the_total_app_recovers_from_a_crash_at_every_scheduling_step() -> None:
    result = Simulation(load_app(APP)).sweep()
    assert len(result.outcomes) > 20
    result.raise_on_failure()
