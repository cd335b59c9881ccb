"""The simulator runs calls, agents and agent state under every fault kind."""

from __future__ import annotations

from pathlib import Path

from perper.app import load_app
from simulator import Simulation
from simulator.faults import FAULT_KINDS
from tests.conftest import EXAMPLES

AGENTS = EXAMPLES / "agents"


def test_the_sums_agents_pass_50_seeds_with_every_fault_kind() -> None:
    simulation = Simulation(load_app(AGENTS / "sums.py"), kinds=FAULT_KINDS)
    result = simulation.run_seeds(range(50), stop_on_failure=True)
    assert result.ok, result.summary()
    assert simulation.reference.heads["sim.processor-2/running_sum-0"] == 100


def test_the_container_agents_pass_10_seeds_with_every_fault_kind() -> None:
    simulation = Simulation(load_app(AGENTS / "usage.py"), kinds=FAULT_KINDS)
    result = simulation.run_seeds(range(10), stop_on_failure=True)
    assert result.ok, result.summary()


def test_a_call_that_counts_in_a_module_global_is_caught() -> None:
    app = load_app(Path(__file__).parent / "apps" / "global_counter.py")
    result = Simulation(app, kinds=FAULT_KINDS).run_seeds(range(50), stop_on_failure=True)
    assert not result.ok
    assert result.first_failure is not None
