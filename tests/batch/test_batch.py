"""The batch path: ``ctx.read_batches`` hands out stored segments, ``yield perper.Batch``
appends many items at once, with the per-item path's recovery, checkpoints and replay."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import perper
from perper.app import load_app
from perper.errors import ConfigError
from perper.replay import DIVERGED, IDENTICAL, STOPPED, replay
from perper.runtime import Runtime
from perper.runtime.settings import Boundary, RuntimeHooks, RuntimeSettings
from perper.store.base import LogStore
from perper.testing.recovery import check_recoverable, stage_execution
from simulator.cli import main as simulator_main
from tests.replay.conftest import record, variant

APP = Path(__file__).resolve().parent.parent / "simulator" / "apps" / "batched.py"

app = perper.App("batches")


@app.stream
async def mixed(ctx: perper.Context):
    yield 1
    yield perper.Batch([2, 3, 4])
    yield perper.Batch([])
    yield perper.Batch(x for x in (5, 6))
    yield 7


@app.stream(recovery="checkpoint")
async def shapes(ctx: perper.Context, source: perper.StreamRef, start: int = 0):
    async for first, batch in ctx.read_batches(source, start=start, with_seq=True):
        yield [first, batch]


@app.stream(recovery="checkpoint")
async def state_sums(ctx: perper.Context, source: perper.StreamRef):
    async for batch in ctx.read_batches(source):
        ctx.state["total"] = ctx.state.get("total", 0) + sum(batch)
        yield perper.Batch([ctx.state["total"]] * len(batch))


@app.stream(recovery="checkpoint")
async def local_sums(ctx: perper.Context, source: perper.StreamRef):
    total = 0  # memory outside ctx.state: lost when resuming from a batch boundary
    async for batch in ctx.read_batches(source):
        total += sum(batch)
        yield perper.Batch([total] * len(batch))


@app.stream
async def reused(ctx: perper.Context):
    items = list(range(1000))  # batch_size items: appended as the list itself
    yield perper.Batch(items)
    items[:] = range(1000, 2000)  # the same list, refilled once the function resumes
    yield perper.Batch(items)
    items.clear()
    yield 2000


def _runtime(store: LogStore, hooks: RuntimeHooks | None = None) -> Runtime:
    return Runtime(
        store,
        app,
        settings=RuntimeSettings(batch_size=1000),
        hooks=hooks or RuntimeHooks(),
        clock=lambda: 1_700_000_000.0,
        entropy=random.Random(0),
    )


async def _run(
    store: LogStore, fn: perper.StreamFunction, inputs: dict[str, list[Any]], **params: Any
) -> list[Any]:
    runtime = _runtime(store)
    execution = await stage_execution(runtime, fn, inputs, params, "t")
    await runtime.execute(execution)
    return [item async for _, item in store.read(execution)]


async def test_a_yielded_batch_is_stored_as_its_items_at_consecutive_seqs(
    store: LogStore,
) -> None:
    assert await _run(store, mixed, {}) == [1, 2, 3, 4, 5, 6, 7]
    assert [seq async for seq, _ in store.read("t/mixed-0")] == list(range(7))


async def test_a_batch_list_refilled_after_its_yield_is_stored_as_it_was_yielded(
    store: LogStore,
) -> None:
    assert await _run(store, reused, {}) == list(range(2001))
    segments = [(first, count) async for first, count, _ in store.segments("t/reused-0")]
    assert segments == [(0, 1000), (1000, 1000), (2000, 1)]


async def test_read_batches_hands_out_each_stored_segment_with_its_first_seq(
    store: LogStore,
) -> None:
    source = [perper.Batch([0, 1, 2]), perper.Batch([3]), perper.Batch([4, 5])]
    out = await _run(store, shapes, {"source": source})
    assert out == [[0, [0, 1, 2]], [3, [3]], [4, [4, 5]]]


async def test_read_batches_from_a_seq_inside_a_segment_starts_with_the_rest_of_it(
    store: LogStore,
) -> None:
    source = [perper.Batch([0, 1, 2]), perper.Batch([3, 4])]
    assert await _run(store, shapes, {"source": source}, start=1) == [[1, [1, 2]], [3, [3, 4]]]


def test_a_batch_of_a_string_is_refused_naming_the_value_and_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"perper\.Batch\('abc'\).*perper\.Batch\(\[item\]\)"):
        perper.Batch("abc")


async def test_a_checkpoint_inside_read_batches_records_the_end_of_the_batch_it_finished(
    store: LogStore,
) -> None:
    class Crash(BaseException):
        pass

    items = 0

    def crash_after_the_second_batch(_: str, boundary: Boundary, count: int) -> None:
        nonlocal items
        if boundary is Boundary.ITEM:
            items += 1
            if items == 3:  # the hook runs before that boundary's checkpoint
                raise Crash()

    runtime = _runtime(
        store, RuntimeHooks(on_boundary=crash_after_the_second_batch, force_checkpoint_every=1)
    )
    source = [perper.Batch([1, 2, 3]), perper.Batch([4]), perper.Batch([5, 6])]
    execution = await stage_execution(runtime, state_sums, {"source": source}, {}, "t")
    with pytest.raises(Crash):
        await runtime.execute(execution)
    entry = await store.meta_get("checkpoints", execution)
    assert entry is not None
    # The boundary after [4]: position 4, four output items, the state after that batch.
    assert entry.value["positions"][0][:2] == ["t/input-source", 4]
    assert (entry.value["out"], entry.value["state"]) == (4, {"total": 10})


def test_check_recoverable_passes_a_batch_function_keeping_its_memory_in_state() -> None:
    source = [perper.Batch([1, 2]), perper.Batch([3]), perper.Batch([4, 5, 6])]
    check = check_recoverable(state_sums, source)
    assert check.ok, str(check)
    # before the read, after each of the 3 batches, after returning, after the seal
    assert check.boundaries == 6


def test_check_recoverable_finds_a_batch_function_keeping_memory_in_a_local() -> None:
    source = [perper.Batch([1, 2]), perper.Batch([3]), perper.Batch([4, 5, 6])]
    check = check_recoverable(local_sums, source)
    assert not check.ok
    divergence = check.divergence
    assert divergence is not None
    # Crashed after the first batch: the resumed total starts again from 0 at [3].
    assert (divergence.seq, divergence.expected, divergence.actual) == (2, 6, 3)


def test_a_recorded_batch_pipeline_replays_identically(tmp_path: Path) -> None:
    batched = load_app(APP)
    log = record(tmp_path / "batched.db", batched, {"count": 40}, batch_size=5)
    results = replay(log, batched)
    assert results.ok, str(results)
    assert {r.outcome for r in results} == {IDENTICAL}
    assert results["r/running_totals-1"].items_compared == 40
    assert results["r/running_totals-1"].items_read == 40


def test_a_changed_item_inside_a_batch_diverges_at_its_exact_seq(tmp_path: Path) -> None:
    log = record(tmp_path / "batched.db", load_app(APP), {"count": 40}, batch_size=5)
    changed = variant(
        tmp_path,
        "changed",
        {'totals.append(ctx.state["total"])': 'totals.append(ctx.state["total"] + (number == 30))'},
        source=APP,
    )
    result = replay(log, changed)["r/running_totals-1"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert result.divergence.seq == 30
    assert result.divergence.input_positions == {"r/numbers-0": 35}


def test_the_simulator_finds_no_failure_in_the_batch_app_under_faults() -> None:
    result = CliRunner().invoke(simulator_main, ["run", str(APP), "--seeds", "0..29"])
    assert result.exit_code == 0, result.output
    assert "ok: every output equals the fault-free run" in result.output


def test_the_simulator_catches_a_batch_app_keeping_its_total_in_a_local(tmp_path: Path) -> None:
    text = APP.read_text()
    old = 'ctx.state["total"] = ctx.state.get("total", 0) + number\n            totals.append(ctx.state["total"])'
    assert old in text
    buggy = tmp_path / "batched_local.py"
    buggy.write_text(
        text.replace(
            "    async for batch in ctx.read_batches(source):\n        totals",
            "    total = 0\n    async for batch in ctx.read_batches(source):\n        totals",
            1,
        ).replace(old, "total += number\n            totals.append(total)")
    )
    result = CliRunner().invoke(
        simulator_main,
        [
            "run",
            str(buggy),
            "--seeds",
            "0..59",
            "--faults",
            "crash",
            "--save",
            str(tmp_path / "f.db"),
        ],
    )
    assert result.exit_code == 1, result.output
    assert "running_totals" in result.output


def test_replay_until_a_seq_inside_a_yielded_batch_stops_just_before_it(tmp_path: Path) -> None:
    batched = load_app(APP)
    log = record(tmp_path / "batched.db", batched, {"count": 40}, batch_size=5)
    result = replay(log, batched, execution="r/running_totals-1", until=10)["r/running_totals-1"]
    assert result.outcome == STOPPED
    assert result.items_compared == 10
