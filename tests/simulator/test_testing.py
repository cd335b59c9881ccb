"""The test helpers: perper.testing's strategies, perper_store fixture and seed shards;
simulator.testing's run_function, deployment state machine and sim fixture."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

from perper import codec
from perper.app import load_app
from perper.store import LogStore
from perper.testing import input_logs, items, seed_shards
from simulator.testing import DeploymentMachine, SimHelper, run_function

from .conftest import APPS, EXAMPLES

basic = load_app(EXAMPLES / "basic.py")
totals_app = load_app(APPS / "totals.py")


def test_run_function_returns_what_the_function_yields() -> None:
    batches = run_function(
        basic.functions["processor"], [{"value": i} for i in range(7)], batch_size=3
    )
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]


def test_run_function_is_deterministic_with_effects() -> None:
    effects = load_app(EXAMPLES / "effects.py")
    first = run_function(effects.functions["orders"], {}, count=5)
    assert first == run_function(effects.functions["orders"], {}, count=5)
    assert len(first) == 5


@settings(max_examples=40, deadline=None)
@given(logs=input_logs(elements=st.integers(-100, 100), max_size=20), size=st.integers(1, 5))
def test_the_processor_batches_every_input_in_order(logs: dict[str, list[int]], size: int) -> None:
    values = logs["source"]
    out = run_function(
        basic.functions["processor"], [{"value": v} for v in values], batch_size=size
    )
    assert [v for batch in out for v in batch] == values
    assert all(len(batch) == size for batch in out[:-1])


@settings(max_examples=60, deadline=None)
@given(item=items())
def test_generated_items_round_trip_through_the_codec(item: object) -> None:
    assert codec.canonical(codec.unpack(codec.pack(item))) == codec.canonical(item)


class TotalsMachine(DeploymentMachine):
    app = totals_app
    ingest_param = "source"
    elements = st.integers(min_value=-50, max_value=50)


def test_the_deployment_state_machine_agrees_with_fault_free_runs() -> None:
    run_state_machine_as_test(
        TotalsMachine, settings=settings(max_examples=15, stateful_step_count=12, deadline=None)
    )


class StampsMachine(DeploymentMachine):
    app = load_app(APPS / "stamps.py")
    elements = st.integers(min_value=0, max_value=9)


def test_the_state_machine_passes_a_correct_app_whose_outputs_use_ctx_now() -> None:
    run_state_machine_as_test(
        StampsMachine, settings=settings(max_examples=10, stateful_step_count=10, deadline=None)
    )


class ForgetfulMachine(DeploymentMachine):
    app = load_app(APPS / "forgetful.py")
    elements = st.integers(min_value=1, max_value=9)


def test_the_state_machine_fails_an_app_that_loses_its_total_on_a_crash() -> None:
    # Caught either way: an output that differs from the fault-free deployment's, or a
    # re-execution that yields another item than the one stored (NondeterminismError).
    # A random search of 200 examples missed the loss for some seeds (11, 22), so the
    # search is derandomized: the same examples every run, and they catch it.
    with pytest.raises(
        AssertionError,
        match=r"sim/totals-0: seq \d+ holds|'sim/totals-0' \(function 'totals'\) is not deterministic",
    ):
        run_state_machine_as_test(
            ForgetfulMachine,
            settings=settings(
                max_examples=200,
                stateful_step_count=15,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                report_multiple_bugs=False,
            ),
        )


class RefusingMachine(TotalsMachine):
    """A compare hook that refuses every stream at the end: the machine must then fail a
    correct app, with the hook's words, which shows the hook is what decides. (Accepting
    everything would not show it: a crash can still end in a NondeterminismError, which
    no compare hook can excuse.)"""

    def compare(
        self, stream: str, expected: list[object] | None, actual: list[object], *, final: bool
    ) -> str | None:
        return f"the hook refuses {stream}" if final else None


def test_the_compare_hook_decides_what_counts_as_a_difference() -> None:
    with pytest.raises(AssertionError, match="the hook refuses sim/"):
        run_state_machine_as_test(
            RefusingMachine,
            settings=settings(
                max_examples=5,
                stateful_step_count=5,
                deadline=None,
                database=None,
                phases=[Phase.generate],
            ),
        )


def test_a_stepped_deployment_shows_a_planted_bug() -> None:
    from perper import StreamRef
    from simulator.deployment import SimulatedDeployment

    params = {"source": StreamRef("ingest/source")}
    with SimulatedDeployment(
        totals_app, params, workers=1, planted_bugs=frozenset({"append-without-compare"})
    ) as deployment:
        deployment.append("ingest/source", [1, 2, 3, 4])
        deployment.advance(0.2)
        deployment.crash(0)
        deployment.restart(0)
        deployment.append("ingest/source", [5])
        deployment.seal("ingest/source")
        deployment.finish()
        outputs = deployment.outputs()
        # evens replays from the start after the crash: the bug re-appends instead of comparing
        assert outputs["sim/totals-0"] == [1, 3, 6, 10, 15]
        assert outputs["sim/evens-1"] != [6, 10]


async def test_perper_store_gives_an_empty_store_of_each_kind(perper_store: LogStore) -> None:
    assert await perper_store.streams() == []
    await perper_store.append("s", 0, [1, 2])
    assert await perper_store.head("s") == 2


def test_sim_runs_seeds_and_fails_the_test_with_the_seed(sim: SimHelper) -> None:
    assert sim.run(EXAMPLES / "basic.py", seeds=range(5)).ok
    with pytest.raises(AssertionError, match=r"seed \d+: FAILED"):
        sim.run(EXAMPLES / "running_total.py", seeds=range(200))


def test_seed_shards_cover_every_seed_once() -> None:
    shards = seed_shards(range(10_000), 8)
    assert len(shards) == 8
    assert sorted(s for shard in shards for s in shard) == list(range(10_000))
    assert sorted(s for shard in seed_shards([5, 3, 9], 2) for s in shard) == [3, 5, 9]


@settings(max_examples=5, deadline=None)
@given(count=st.integers(min_value=1, max_value=8))
def test_the_sim_fixture_serves_a_hypothesis_test(sim: SimHelper, count: int) -> None:
    result = sim.run(EXAMPLES / "basic.py", {"count": count}, seeds=range(2), faults=["crash"])
    assert result.ok and len(result.outcomes) == 2


sessions_app = load_app(APPS / "sessions.py")


def test_run_function_advances_the_clock_per_input_item_by_the_time_schedule() -> None:
    clicks = ["a", "b", "c", "d", "e"]
    at = [0.0, 10.0, 50.0, 55.0, 100.0]
    out = run_function(sessions_app.functions["sessions"], clicks, time_schedule=at)
    assert out == [{"ended": 2}, {"ended": 2}]
    # seconds per item: 40 s between every two clicks ends a session at each
    every = run_function(sessions_app.functions["sessions"], clicks, time_schedule=40.0)
    assert every == [{"ended": 1}] * 4


def test_check_recoverable_resumes_the_time_schedule_where_the_checkpoint_resumes() -> None:
    from perper.testing import check_recoverable

    at = [0.0, 10.0, 50.0, 55.0, 100.0, 101.0]
    good = check_recoverable(sessions_app.functions["sessions"], list("abcdef"), time_schedule=at)
    assert good.ok, str(good)
    bad = check_recoverable(
        sessions_app.functions["forgetful_sessions"], list("abcdef"), time_schedule=at
    )
    assert not bad.ok and bad.divergence is not None


def test_a_decreasing_time_schedule_is_refused_with_the_values() -> None:
    from perper.errors import ConfigError

    with pytest.raises(ConfigError, match=r"time_schedule=\[5.0, 1.0\] decreases"):
        run_function(sessions_app.functions["sessions"], ["a", "b"], time_schedule=[5, 1])
