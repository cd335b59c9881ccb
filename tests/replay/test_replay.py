"""Per-execution replay through the API: what is compared, and how each difference is told."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
from freezegun import freeze_time

import perper
from perper.app import App
from perper.codec import pack
from perper.errors import ReplayError
from perper.replay import (
    DIVERGED,
    IDENTICAL,
    STOPPED,
    UNREPLAYABLE,
    ReplayDivergedError,
    replay,
    replay_async,
)
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.store.sqlite import SQLiteStore
from tests.replay.conftest import (
    CHANGED_PROCESSOR,
    FIXTURES,
    NO_CONSUMER,
    RENAMED_PARAMETER,
    record,
    variant,
)

# ------------------------------------------------------------------ identical


def test_a_clean_log_replays_identically_item_by_item(basic_log: Path, basic: App) -> None:
    results = replay(basic_log, basic)
    assert [(r.execution, r.outcome) for r in results] == [
        ("clean/main", IDENTICAL),
        ("clean/generator-0", IDENTICAL),
        ("clean/processor-1", IDENTICAL),
        ("clean/consumer-2", IDENTICAL),
    ]
    assert results["clean/generator-0"].items_compared == 1000
    assert results["clean/processor-1"].items_compared == 334
    assert results["clean/processor-1"].recorded_items == 334
    assert results["clean/processor-1"].items_read == 1000
    assert results["clean/main"].starts_compared == 3
    assert results.ok
    assert results.exit_code == 0
    results.raise_on_failure()


def test_replay_never_modifies_the_log_nor_leaves_files_beside_it(
    basic_log: Path, basic: App, tmp_path: Path
) -> None:
    before = hashlib.sha256(basic_log.read_bytes()).hexdigest()
    listing = sorted(p.name for p in tmp_path.iterdir())
    replay(basic_log, basic)
    replay(basic_log, variant(tmp_path, "changed", CHANGED_PROCESSOR))
    assert hashlib.sha256(basic_log.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py") == listing


def test_a_log_still_being_written_is_read_with_its_wal(tmp_path: Path, basic: App) -> None:
    path = tmp_path / "live.db"

    async def body() -> None:
        async with SQLiteStore(path) as writer:
            await perper.Runtime(writer, basic).run("live", {"count": 30})
            assert path.with_name("live.db-wal").exists()  # the writer still has it open
            results = await replay_async(path, basic)
            assert results["live/processor-1"].items_compared == 10
            assert results.ok

    asyncio.run(body())


def test_results_are_frozen_values_that_print_and_serialise(basic_log: Path, basic: App) -> None:
    results = replay(basic_log, basic, function="processor")
    [result] = results.results
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.outcome = DIVERGED  # type: ignore[misc]
    assert "clean/processor-1 (processor): identical (334 items, 1000 read)" in str(results)
    data = json.loads(json.dumps(results.to_json()))
    assert data["exit_code"] == 0
    assert data["executions"][0]["items_compared"] == 334


# ------------------------------------------------------------------ divergences


def test_a_divergence_names_function_seq_expected_actual_diff_and_input_positions(
    basic_log: Path, tmp_path: Path
) -> None:
    results = replay(basic_log, variant(tmp_path, "changed", CHANGED_PROCESSOR))
    assert results.exit_code == 1
    assert not results.ok
    [failed] = results.failures
    assert failed.execution == "clean/processor-1"
    assert failed.outcome == DIVERGED
    assert failed.items_compared == 16
    divergence = failed.divergence
    assert divergence is not None
    assert (divergence.kind, divergence.function, divergence.seq) == ("item", "processor", 16)
    assert divergence.expected == [48, 49, 50]
    assert divergence.actual == [48, 49, 100]
    assert divergence.diff == ("item[2]: expected 50, got 100",)
    # 51 input items (0..50) had been consumed when [48, 49, 100] was yielded.
    assert divergence.input_positions == {"clean/generator-0": 51}
    with pytest.raises(ReplayDivergedError, match=r"expected:  \[48, 49, 50\]"):
        results.raise_on_failure()


def test_an_old_recording_diverges_from_the_new_code_at_its_first_item(basic: App) -> None:
    results = replay(FIXTURES / "basic-old-processor.db", basic)
    divergence = results["old-processor/processor-1"].divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected, divergence.actual) == (0, [0, 1], [0, 1, 2])
    assert divergence.input_positions == {"old-processor/generator-0": 3}
    assert [r.outcome for r in results].count(IDENTICAL) == 3


def test_a_divergence_deep_in_a_long_segment_is_located_exactly(tmp_path: Path, basic: App) -> None:
    # Big segments: the fast pass finds the segment, the second pass the exact item.
    log = record(tmp_path / "big.db", basic, {"count": 3000}, batch_size=1000)
    results = replay(
        log,
        variant(
            tmp_path,
            "changed",
            {
                "yield list(batch)\n            batch.clear()": "yield [v + 1 if v == 2500 else v for v in batch]\n            batch.clear()"
            },
        ),
    )
    divergence = results["r/processor-1"].divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected, divergence.actual) == (
        833,
        [2499, 2500, 2501],
        [2499, 2501, 2501],
    )
    assert divergence.input_positions == {"r/generator-0": 2502}
    assert results["r/processor-1"].items_compared == 833


def test_output_shorter_than_recorded_is_reported_at_the_first_missing_item(
    basic_log: Path, tmp_path: Path
) -> None:
    shorter = variant(
        tmp_path, "shorter", {"    if batch:  # the last": "    if False:  # the last"}
    )
    result = replay(basic_log, shorter)["clean/processor-1"]
    assert result.outcome == DIVERGED
    assert result.items_compared == 333
    assert result.divergence is not None
    assert result.divergence.kind == "shorter"
    assert (result.divergence.seq, result.divergence.expected) == (333, [999])
    assert "finished after 333 items; the recording has 334" in result.divergence.message


def test_output_longer_than_recorded_is_reported_at_the_first_extra_item(
    basic_log: Path, tmp_path: Path
) -> None:
    longer = variant(
        tmp_path,
        "longer",
        {
            "        yield list(batch)\n        batch.clear()\n": "        yield list(batch)\n        batch.clear()\n    yield ['end']\n"
        },
    )
    result = replay(basic_log, longer)["clean/processor-1"]
    assert result.divergence is not None
    assert (result.divergence.kind, result.divergence.seq) == ("longer", 334)
    assert result.divergence.actual == ["end"]
    assert result.divergence.expected is None
    assert result.divergence.input_positions == {"clean/generator-0": 1000}


def test_an_exception_during_replay_is_reported_with_its_traceback(
    basic_log: Path, tmp_path: Path
) -> None:
    raising = variant(
        tmp_path,
        "raising",
        {
            '        batch.append(item["value"])\n': '        batch.append(item["value"])\n'
            "        if item[\"value\"] == 500:\n            raise KeyError('lost item 500')\n"
        },
    )
    result = replay(basic_log, raising)["clean/processor-1"]
    divergence = result.divergence
    assert divergence is not None
    assert divergence.kind == "exception"
    assert divergence.seq == 166
    assert result.items_compared == 166
    assert divergence.actual == "KeyError: 'lost item 500'"
    assert divergence.expected == [498, 499, 500]
    assert divergence.traceback is not None
    assert "Traceback (most recent call last)" in divergence.traceback
    assert "basic_raising.py" in divergence.traceback
    assert divergence.input_positions == {"clean/generator-0": 501}


def test_a_start_with_other_parameters_is_a_divergence_of_the_launcher(
    basic_log: Path, tmp_path: Path
) -> None:
    results = replay(basic_log, variant(tmp_path, "batch4", {"batch_size=3": "batch_size=4"}))
    divergence = results["clean/main"].divergence
    assert divergence is not None
    assert (divergence.kind, divergence.seq) == ("start", 1)
    assert "start['params']['batch_size']: expected 3, got 4" in divergence.diff
    assert results["clean/processor-1"].outcome == IDENTICAL  # replayed with recorded params


def test_a_start_the_recording_lacks_and_a_missing_start_are_divergences(
    basic_log: Path, tmp_path: Path
) -> None:
    extra = variant(
        tmp_path,
        "extra",
        {
            "    await ctx.start(consumer, proc)\n": "    await ctx.start(consumer, proc)\n    await ctx.start(consumer, gen)\n"
        },
    )
    divergence = replay(basic_log, extra)["clean/main"].divergence
    assert divergence is not None
    assert divergence.kind == "start"
    assert divergence.actual["function"] == "consumer"
    assert divergence.expected is None
    assert "never started" in divergence.message

    fewer = variant(tmp_path, "fewer", {"    await ctx.start(consumer, proc)\n": ""})
    divergence = replay(basic_log, fewer)["clean/main"].divergence
    assert divergence is not None
    assert divergence.kind == "start"
    assert divergence.expected["function"] == "consumer"
    assert divergence.actual is None
    assert "the recording started 'clean/consumer-2'" in divergence.message


# ------------------------------------------------------------------ cannot replay


def test_a_function_missing_from_the_app_cannot_be_replayed_and_says_why(
    basic_log: Path, tmp_path: Path
) -> None:
    results = replay(basic_log, variant(tmp_path, "noconsumer", NO_CONSUMER))
    result = results["clean/consumer-2"]
    assert result.outcome == UNREPLAYABLE
    assert results.exit_code == 2
    assert result.reason is not None
    assert "the app 'basic' has no function 'consumer'" in result.reason
    assert "removed or renamed" in result.reason
    with pytest.raises(ReplayError, match="has no function 'consumer'"):
        results.raise_on_failure()


def test_parameters_that_no_longer_fit_cannot_be_replayed_and_say_why(
    basic_log: Path, tmp_path: Path
) -> None:
    results = replay(
        basic_log, variant(tmp_path, "renamed", {**RENAMED_PARAMETER, "batch_size=3": "size=3"})
    )
    result = results["clean/processor-1"]
    assert result.outcome == UNREPLAYABLE
    assert results.exit_code == 2
    assert result.reason is not None
    assert (
        "no longer fit its signature processor(source: perper.streamref.StreamRef, "
        "size: int)" in result.reason
    )
    assert "'batch_size': 3" in result.reason
    assert "missing a required argument: 'size'" in (result.reason)


def test_a_log_that_is_not_a_perper_log_cannot_be_replayed(tmp_path: Path, basic: App) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ReplayError, match="not a perper log"):
        replay(other, basic)
    with pytest.raises(ReplayError, match="does not exist"):
        replay(tmp_path / "missing.db", basic)


def test_selecting_an_unknown_function_says_what_the_log_has(basic_log: Path, basic: App) -> None:
    with pytest.raises(
        ReplayError,
        match="has no execution of function 'nope'; its functions "
        "are consumer, generator, main, processor",
    ):
        replay(basic_log, basic, function="nope")
    assert [r.execution for r in replay(basic_log, basic, function="generator")] == [
        "clean/generator-0"
    ]
    assert [r.execution for r in replay(basic_log, basic, execution="clean/consumer-2")] == [
        "clean/consumer-2"
    ]
    with pytest.raises(ReplayError, match="has no execution of run 'other'"):
        replay(basic_log, basic, run="other")


def test_progress_is_reported_per_segment_up_to_the_recorded_count(
    basic_log: Path, basic: App
) -> None:
    seen: list[tuple[str, int, int]] = []
    replay(basic_log, basic, function="generator", progress=lambda *a: seen.append(a))
    assert seen[0] == ("clean/generator-0", 100, 1000)  # the fixture's segments hold 100
    assert seen[-1] == ("clean/generator-0", 1000, 1000)
    assert [compared for _, compared, _ in seen] == sorted({c for _, c, _ in seen})


def test_the_sync_api_inside_an_event_loop_points_to_the_async_one(
    basic_log: Path, basic: App
) -> None:
    async def body() -> None:
        with pytest.raises(ReplayError, match=r"await perper\.replay\.replay_async"):
            replay(basic_log, basic)
        assert (await replay_async(basic_log, basic)).ok

    asyncio.run(body())


# ------------------------------------------------------------------ until


def test_until_stops_just_before_the_function_yields_that_seq(basic_log: Path, basic: App) -> None:
    results = replay(basic_log, basic, function="processor", until=10)
    [result] = results.results
    assert result.outcome == STOPPED
    assert result.stopped_before == 10
    assert result.items_compared == 10
    # It stopped right after yielding seq 9 = [27, 28, 29]: 30 inputs consumed, no more.
    assert result.items_read == 30
    assert results.exit_code == 0


def test_until_past_a_divergence_reports_the_divergence(basic_log: Path, tmp_path: Path) -> None:
    changed = variant(tmp_path, "changed", CHANGED_PROCESSOR)
    assert replay(basic_log, changed, function="processor", until=16).exit_code == 0
    result = replay(basic_log, changed, function="processor", until=20)["clean/processor-1"]
    assert result.divergence is not None
    assert result.divergence.seq == 16


# ------------------------------------------------------------------ effects and time


def test_recorded_effects_are_handed_back_in_order(tmp_path: Path) -> None:
    effects = perper.load_app(FIXTURES.parent / "examples" / "effects.py")
    results = replay(FIXTURES / "effects.db", effects)
    assert results.ok
    assert results["effects/orders-0"].effects_replayed == 150  # uuid, random, now per order
    assert results["effects/sampler-1"].items_compared > 0


def test_asking_for_effects_in_another_order_is_a_divergence(tmp_path: Path) -> None:
    swapped = variant(
        tmp_path,
        "swapped",
        {
            '"id": str(ctx.uuid()),\n            "amount": round(ctx.random() * 100, 2),': '"amount": round(ctx.random() * 100, 2),\n            "id": str(ctx.uuid()),'
        },
        source=FIXTURES.parent / "examples" / "effects.py",
    )
    divergence = replay(FIXTURES / "effects.db", swapped)["effects/orders-0"].divergence
    assert divergence is not None
    assert (divergence.kind, divergence.seq) == ("effect", 0)
    assert (divergence.expected, divergence.actual) == ("ctx.uuid()", "ctx.random()")


def test_asking_for_more_effects_than_recorded_is_a_divergence(tmp_path: Path) -> None:
    source = FIXTURES.parent / "examples" / "effects.py"
    more = variant(
        tmp_path, "more", {'"at": ctx.now(),': '"at": ctx.now() + 0 * ctx.now(),'}, source=source
    )
    divergence = replay(FIXTURES / "effects.db", more)["effects/orders-0"].divergence
    assert divergence is not None
    assert divergence.kind == "effect"
    assert divergence.seq == 3
    assert divergence.expected == "ctx.uuid()"


def _ticking(asks_time: bool, swallow: bool = False) -> App:
    """The same app in two versions: one asks ctx.now() per item without using it."""
    app = perper.App("ticking")

    @app.stream(name="ticks")
    async def ticks(ctx: perper.Context, count: int):  # type: ignore[no-untyped-def]
        for i in range(count):
            if asks_time:
                ctx.now()
            elif swallow:
                # Swallowing every Exception must not hide a divergence.
                with contextlib.suppress(Exception):
                    ctx.random()  # another kind of effect than recorded
            yield i

    @app.launcher(name="main")
    async def main(ctx: perper.Context, count: int = 3):  # type: ignore[no-untyped-def]
        await ctx.start(ticks, count=count)

    return app


def test_asking_for_fewer_effects_than_recorded_is_a_divergence(tmp_path: Path) -> None:
    log = record(tmp_path / "ticking.db", _ticking(asks_time=True), {"count": 3})
    assert replay(log, _ticking(asks_time=True)).ok
    result = replay(log, _ticking(asks_time=False))["r/ticks-0"]
    assert result.items_compared == 3  # the items are the same ...
    divergence = result.divergence  # ... but the recorded effects were not all asked for
    assert divergence is not None
    assert divergence.kind == "effect"
    assert divergence.seq == 0
    assert divergence.expected == "ctx.now()"
    assert "used 0 of the 3 recorded effects" in divergence.message


def test_user_code_catching_exception_cannot_hide_an_effect_divergence(tmp_path: Path) -> None:
    log = record(tmp_path / "ticking.db", _ticking(asks_time=True), {"count": 3})
    result = replay(log, _ticking(asks_time=False, swallow=True))["r/ticks-0"]
    assert result.divergence is not None
    assert (result.divergence.kind, result.divergence.actual) == ("effect", "ctx.random()")
    assert result.items_compared == 0


clocked = perper.App("clocked")


@clocked.stream
async def stamps(ctx: perper.Context, count: int):
    for i in range(count):
        at = ctx.now()
        yield {"i": i, "at": at, "direct": time.time(), "year": datetime.datetime.now().year}


@clocked.launcher
async def clocked_main(ctx: perper.Context, count: int = 3):
    await ctx.start(stamps, count=count)


def test_direct_clock_reads_see_the_recorded_now_during_replay(tmp_path: Path) -> None:
    path = tmp_path / "clocked.db"

    async def body() -> None:
        async with SQLiteStore(path) as store:
            await perper.Runtime(store, clocked, clock=time.time).run("r", {"count": 3})

    with freeze_time("2020-01-02 03:04:05", real_asyncio=True):
        asyncio.run(body())
    result = replay(path, clocked)["r/stamps-0"]
    assert result.outcome == IDENTICAL
    assert result.items_compared == 3
    unfrozen = replay(path, clocked, freeze_clock=False)["r/stamps-0"]
    assert unfrozen.divergence is not None
    assert unfrozen.divergence.diff[0].startswith("item['direct']: expected 1577934245.0")


# ------------------------------------------------------------------ recorded state


def _failing(fixed: bool, error: type[Exception] = RuntimeError) -> App:
    """Versions of an app: one fails at item 5, the fixed one does not."""
    app = perper.App("failing")

    @app.stream(name="numbers")
    async def numbers(ctx: perper.Context, count: int):  # type: ignore[no-untyped-def]
        for i in range(count):
            if i == 5 and not fixed:
                raise error(f"boom at {i}")
            yield i

    @app.launcher(name="main")
    async def main(ctx: perper.Context):  # type: ignore[no-untyped-def]
        await ctx.start(numbers, count=10)

    return app


def test_a_reproduced_recorded_failure_is_identical_and_a_fixed_one_is_reported(
    tmp_path: Path,
) -> None:
    log = record(tmp_path / "failed.db", _failing(fixed=False), expect_failure=True)
    result = replay(log, _failing(fixed=False))["r/numbers-0"]
    assert result.outcome == IDENTICAL
    assert result.items_compared == 5
    assert result.notes == ("reproduced the recorded failure: RuntimeError: boom at 5",)

    result = replay(log, _failing(fixed=True))["r/numbers-0"]
    assert result.divergence is not None
    # It no longer fails: it yields an item where the recording ends with the failure.
    assert (result.divergence.kind, result.divergence.seq) == ("longer", 5)

    result = replay(log, _failing(fixed=False, error=ValueError))["r/numbers-0"]
    assert result.divergence is not None
    assert (result.divergence.kind, result.divergence.seq) == ("failure", 5)
    assert result.divergence.expected == "RuntimeError: boom at 5"
    assert result.divergence.actual == "ValueError: boom at 5"
    assert "Traceback" in (result.divergence.traceback or "")


def test_an_unfinished_execution_is_compared_as_far_as_it_was_recorded(
    tmp_path: Path, basic: App
) -> None:
    path = tmp_path / "running.db"

    async def body(output: list[list[int]]) -> None:
        # As exported mid-run: input not finished, output lagging behind it.
        async with SQLiteStore(path) as store:
            await store.meta_cas(
                "runs", "r", RunRecord("r", "basic", "main", pack({})).to_meta(), version=0
            )
            await store.append("r/generator-0", 0, [{"value": i} for i in range(10)])
            params = pack({"source": perper.StreamRef("r/generator-0"), "batch_size": 3})
            record_ = ExecutionRecord("r/processor-1", "r", "processor", "stream", params)
            await store.meta_cas("executions", record_.id, record_.to_meta(), version=0)
            await store.append("r/processor-1", 0, output)

    asyncio.run(body([[0, 1, 2], [3, 4, 5]]))
    result = replay(path, basic)["r/processor-1"]
    assert result.outcome == IDENTICAL
    assert result.items_compared == 2
    assert "all 2 of its recorded items were reproduced" in result.notes[0]

    path.unlink()
    asyncio.run(body([[0, 1, 2], [3, 4, 6]]))
    result = replay(path, basic)["r/processor-1"]
    assert result.divergence is not None
    assert result.divergence.seq == 1


def test_a_cyclic_graph_replays_each_side_over_the_others_recorded_output(
    tmp_path: Path,
) -> None:
    cycle = perper.load_app(FIXTURES.parent / "examples" / "cycle.py")
    log = record(tmp_path / "cycle.db", cycle, {"bound": 50})
    results = replay(log, cycle)
    assert results.ok
    assert results["r/ping-0"].items_compared == 26
    assert results["r/pong-1"].items_compared == 26
    assert results["r/ping-0"].items_read == 26  # it returns on reading pong's 51


def test_the_frozen_clock_follows_each_recorded_now_and_is_restored_after() -> None:
    from perper.replay.clock import DEFAULT_FROZEN_TIME, FrozenClock

    with FrozenClock() as clock:
        assert clock.available
        assert time.time() == DEFAULT_FROZEN_TIME
        clock.move_to(1_700_000_000.25)
        assert time.time() == 1_700_000_000.25
        assert datetime.datetime.now(datetime.UTC).isoformat() == (
            "2023-11-14T22:13:20.250000+00:00"
        )
        clock.move_to(1_700_000_003.0)
        assert time.time() == 1_700_000_003.0
    assert time.time() > 1_700_000_003.0  # the real clock again
    with FrozenClock(enabled=False) as clock:
        assert not clock.available
        assert time.time() > 1_700_000_003.0
