"""Simulated deployments of the real runtime: the correct runtime passes, planted bugs
and unrecoverable apps are caught, failures reproduce and shrink."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from perper.app import load_app
from perper.cli import main as perper_cli
from perper.testing import seed_shards
from simulator import Crash, Partition, Simulation, save_sqlite
from simulator.faults import FAULT_KINDS, derive_scenario, format_schedule, parse_schedule
from simulator.testing import SimHelper

from .conftest import APPS, EXAMPLES

BUGS = [
    (
        "append-without-compare",
        EXAMPLES / "basic.py",
        {"extra-item", "output-mismatch", "nondeterminism"},
    ),
    (
        "checkpoint-before-flush",
        APPS / "checkpointed.py",
        {"gap", "missing-items", "output-mismatch"},
    ),
    ("ignore-fencing", EXAMPLES / "basic.py", {"fencing"}),
]


def test_the_basic_example_passes_200_seeds(sim: SimHelper) -> None:
    result = sim.run(EXAMPLES / "basic.py", seeds=range(200))
    assert len(result.outcomes) == 200 and result.ok
    assert result.steps > 0 and result.virtual_time > 0


@pytest.mark.parametrize("app", ["cycle.py", "checkpointed.py"])
def test_other_correct_apps_pass_their_seeds(sim: SimHelper, app: str) -> None:
    path = EXAMPLES / app if (EXAMPLES / app).exists() else APPS / app
    sim.run(path, seeds=range(150))


@pytest.mark.parametrize(("bug", "app", "kinds"), BUGS, ids=[bug for bug, _, _ in BUGS])
def test_each_planted_bug_is_caught_within_1000_seeds(
    bug: str, app: object, kinds: set[str]
) -> None:
    simulation = Simulation(load_app(app), planted_bugs={bug})  # type: ignore[arg-type]
    result = simulation.run_seeds(range(1000), stop_on_failure=True)
    assert not result.ok, f"planted bug {bug} survived 1000 seeds"
    assert result.first_failure is not None and result.first_failure.violation is not None
    assert result.first_failure.violation.kind in kinds, result.first_failure.describe()


def test_the_crash_sweep_catches_a_checkpoint_saved_before_its_outputs() -> None:
    app = load_app(APPS / "checkpointed.py")
    assert Simulation(app, {"count": 8}).sweep().ok
    buggy = Simulation(app, {"count": 8}, planted_bugs={"checkpoint-before-flush"}).sweep()
    assert not buggy.ok
    assert buggy.first_failure is not None
    assert buggy.first_failure.scenario.schedule[0].kind == "crash"


def test_a_local_running_total_in_checkpoint_mode_fails_within_200_seeds() -> None:
    simulation = Simulation(load_app(EXAMPLES / "running_total.py"))
    result = simulation.run_seeds(range(200), stop_on_failure=True)
    failure = result.first_failure
    assert failure is not None and failure.violation is not None
    assert failure.violation.kind in {"nondeterminism", "output-mismatch"}
    assert failure.violation.stream == "sim/running_total-1"
    # the same seed fails the same way, step for step
    again = simulation.run_seed(failure.seed, trace=True)
    first = simulation.run_seed(failure.seed, trace=True)
    assert again.violation == first.violation == failure.violation
    assert again.trace_hash == first.trace_hash and again.fired == failure.fired


def test_shrinking_a_failing_schedule_leaves_at_most_two_faults() -> None:
    from simulator import shrink

    simulation = Simulation(load_app(EXAMPLES / "running_total.py"))
    failure = simulation.run_seeds(range(200), stop_on_failure=True).first_failure
    assert failure is not None and failure.violation is not None
    shrunk = shrink(
        failure.scenario.schedule,
        lambda schedule: simulation.run_seed(failure.seed, schedule=schedule),
        failure.violation.kind,
    )
    assert 1 <= len(shrunk.schedule) <= 2
    assert shrunk.result.violation is not None
    assert shrunk.result.violation.kind == failure.violation.kind
    # the compact spec reproduces it
    again = simulation.run_seed(
        failure.seed, schedule=parse_schedule(format_schedule(shrunk.schedule))
    )
    assert again.violation == shrunk.result.violation


def test_a_failing_runs_store_opens_with_perper_streams_ls(tmp_path: object) -> None:
    simulation = Simulation(load_app(EXAMPLES / "running_total.py"))
    # The first seed where the runtime itself failed the execution (a seed whose wrong
    # output the checkers catch first ends with the execution still running).
    failure = next(
        result
        for result in map(simulation.run_seed, range(200))
        if result.violation is not None and result.violation.kind == "nondeterminism"
    )
    assert failure.store is not None
    path = save_sqlite(failure.store, tmp_path / "failure.db")  # type: ignore[operator]
    result = CliRunner().invoke(
        perper_cli, ["streams", "ls", "--store", f"sqlite:///{path}", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["sim/running_total-1"]["status"] == "failed"
    assert rows["sim/numbers-0"]["function"] == "numbers"


def test_a_crash_restarts_the_worker_and_the_run_still_matches() -> None:
    simulation = Simulation(load_app(EXAMPLES / "basic.py"), {"count": 50}, workers=2)
    schedule = (Crash("crash", 0, 5, 0.0), Crash("crash", 1, 9, 1.0))
    result = simulation.run_seed(0, schedule=schedule)
    assert result.ok, result.describe()
    assert any("crash worker 0" in line for line in result.fired)
    assert any("restart worker 0" in line for line in result.fired)
    assert any("crash worker 1" in line for line in result.fired)


def test_a_long_partition_makes_store_calls_give_up_and_the_run_still_matches() -> None:
    simulation = Simulation(load_app(EXAMPLES / "basic.py"), {"count": 50}, workers=1)
    # Cut the only worker off from the start until the faults stop (heal_at is at least
    # two lease TTLs, the give-up time): its calls fail, it retries, and it finishes.
    result = simulation.run_seed(0, schedule=(Partition("partition", 0, 0.0, 1000.0),))
    assert result.ok, result.describe()
    assert any("(partitioned)" in line for line in result.fired), result.fired


def test_seeds_derive_everything_and_describe_it_in_words() -> None:
    scenario = derive_scenario(11, kinds=FAULT_KINDS, workers=3)
    assert scenario == derive_scenario(11, kinds=FAULT_KINDS, workers=3)
    assert scenario != derive_scenario(12, kinds=FAULT_KINDS, workers=3)
    assert parse_schedule(format_schedule(scenario.schedule)) == scenario.schedule
    assert all(fault.describe() for fault in scenario.schedule)


def test_swarm_testing_enables_different_fault_kinds_per_seed() -> None:
    enabled = {derive_scenario(seed).kinds for seed in range(100)}
    assert len(enabled) > 5


@pytest.mark.slow
def test_transient_store_errors_do_not_fail_the_run(sim: SimHelper) -> None:
    sim.run(EXAMPLES / "basic.py", {"count": 100}, seeds=range(400), faults=FAULT_KINDS)


def test_recorded_effects_survive_latency_and_lease_expiry(sim: SimHelper) -> None:
    sim.run(EXAMPLES / "effects.py", seeds=range(300))


@pytest.mark.slow
@pytest.mark.parametrize("seeds", seed_shards(range(10_000), 8))
def test_the_correct_runtime_passes_10_000_seeds(sim: SimHelper, seeds: range) -> None:
    sim.run(EXAMPLES / "basic.py", {"count": 20}, seeds=seeds)


def test_an_item_never_becomes_durable_before_the_effects_it_used(sim: SimHelper) -> None:
    # Seed 2416 once failed: a background flush took the output buffer after awaiting the
    # effects append, so an item using an unrecorded ctx.now() was written.
    sim.run(EXAMPLES / "effects.py", seeds=[2416], faults=FAULT_KINDS)


def test_a_seed_started_from_the_prepared_store_runs_exactly_as_one_that_prepares_it() -> None:
    from simulator.world import simulate

    simulation = Simulation(load_app(EXAMPLES / "effects.py"), kinds=("crash", "latency"))
    for seed in range(6):
        scenario = simulation.scenario(seed)
        prepared = simulation.run_scenario(scenario, trace=True)
        fresh = simulate(
            simulation.app,
            simulation.params,
            scenario,
            reference=simulation.reference,
            trace=True,
        )
        assert prepared.ok and fresh.ok
        assert prepared.trace_hash == fresh.trace_hash and prepared.steps == fresh.steps
