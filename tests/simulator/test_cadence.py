"""The checkpoint and batch cadence a seed draws, relative to the run's length: short
runs draw what they always did; long ones scale it, and recovery bugs are still caught."""

from __future__ import annotations

from pathlib import Path

from perper.app import load_app
from simulator.bench import record_clicks
from simulator.campaign import Simulation
from simulator.faults import CADENCE_ITEMS, FAULT_KINDS, cadence_scale, derive_scenario
from simulator.recorded import load_recorded

from .conftest import EXAMPLES


def test_a_run_of_up_to_100_items_draws_exactly_the_scenario_it_always_did() -> None:
    assert CADENCE_ITEMS == 100
    for seed in range(100):
        plain = derive_scenario(seed, kinds=FAULT_KINDS)
        for items in (1, 50, 100):
            assert derive_scenario(seed, kinds=FAULT_KINDS, reference_items=items) == plain


def test_a_10000_item_run_checkpoints_and_flushes_at_a_cadence_scaled_to_its_length() -> None:
    assert [cadence_scale(n) for n in (0, 100, 101, 250, 10_000)] == [1, 1, 2, 3, 100]
    checkpoints, batches = set(), set()
    for seed in range(200):
        plain = derive_scenario(seed, kinds=FAULT_KINDS)
        long = derive_scenario(seed, kinds=FAULT_KINDS, reference_items=10_000)
        assert long.settings.checkpoint_every == 100 * plain.settings.checkpoint_every
        assert long.settings.batch_size == 100 * plain.settings.batch_size
        # Everything else (workers, faults and where they strike) is drawn as before.
        assert (long.workers, long.kinds, long.schedule) == (
            plain.workers,
            plain.kinds,
            plain.schedule,
        )
        checkpoints.add(long.settings.checkpoint_every)
        batches.add(long.settings.batch_size)
    assert checkpoints == {100, 300, 1000, 100_000}
    assert batches == {100, 200, 500, 100_000}


def forgetful_clicks(folder: Path) -> Path:
    """examples/clicks.py with its open sessions in a local dict instead of ctx.state,
    while it still declares recovery="checkpoint": a resume loses them."""
    source = (EXAMPLES / "clicks.py").read_text()
    changed = source.replace('ctx.state.setdefault("open", {})', "{}", 1)
    assert changed != source
    path = folder / "forgetful_clicks.py"
    path.write_text(changed)
    return path


def test_state_kept_outside_ctx_state_is_still_caught_on_a_long_recorded_log(
    tmp_path: Path,
) -> None:
    log = record_clicks(tmp_path / "clicks.db", 2_000)
    recorded = load_recorded(log, load_app(EXAMPLES / "clicks.py"))
    correct = Simulation(load_app(EXAMPLES / "clicks.py"), kinds=("crash",), recorded=recorded)
    assert correct.scenario(0).settings.checkpoint_every % cadence_scale(2_000) == 0
    assert correct.run_seeds(range(10)).ok
    forgetful = Simulation(
        load_app(forgetful_clicks(tmp_path)), kinds=("crash",), recorded=recorded
    )
    result = forgetful.run_seeds(range(10), stop_on_failure=True)
    assert not result.ok, "a function that forgets its sessions on a resume passed 10 seeds"
    assert result.first_failure is not None and result.first_failure.violation is not None
    assert "shop/sessions-0" in result.first_failure.describe()
