"""Whole-run replay: a run re-run from its ingest streams and launcher parameters."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import perper
from perper.app import App
from perper.replay import DIVERGED, IDENTICAL, UNREPLAYABLE, replay_graph
from perper.store.sqlite import SQLiteStore
from tests.replay.conftest import CHANGED_PROCESSOR, FIXTURES, NO_CONSUMER, variant


def test_a_clean_run_reproduces_every_stream(basic_log: Path, basic: App) -> None:
    results = replay_graph(basic_log, basic)
    [run] = results.runs
    assert run.outcome == IDENTICAL
    assert results.exit_code == 0
    assert [(s.stream, s.function, s.items_compared) for s in run.streams] == [
        ("clean/generator-0", "generator", 1000),
        ("clean/processor-1", "processor", 334),
        ("clean/consumer-2", "consumer", 0),
    ]


def test_a_changed_function_shows_in_its_stream_with_the_first_difference(
    basic_log: Path, tmp_path: Path
) -> None:
    results = replay_graph(basic_log, variant(tmp_path, "changed", CHANGED_PROCESSOR))
    [run] = results.runs
    assert run.outcome == DIVERGED
    assert results.exit_code == 1
    streams = {s.stream: s for s in run.streams}
    assert streams["clean/generator-0"].ok
    divergence = streams["clean/processor-1"].divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected, divergence.actual) == (
        16,
        [48, 49, 50],
        [48, 49, 100],
    )


def test_a_run_whose_function_is_gone_cannot_be_replayed(basic_log: Path, tmp_path: Path) -> None:
    results = replay_graph(basic_log, variant(tmp_path, "gone", NO_CONSUMER))
    [run] = results.runs
    assert run.outcome == UNREPLAYABLE
    assert results.exit_code == 2
    assert run.reason is not None
    assert "has no function 'consumer'" in run.reason


def test_recorded_effects_are_copied_so_the_run_reproduces(tmp_path: Path) -> None:
    effects = perper.load_app(FIXTURES.parent / "examples" / "effects.py")
    results = replay_graph(FIXTURES / "effects.db", effects)
    [run] = results.runs
    assert run.outcome == IDENTICAL, results.describe()
    names = {s.stream for s in run.streams}
    assert "effects/orders-0#effects" in names
    assert "effects/sampler-1" in names


ingesting = perper.App("ingesting")


@ingesting.stream
async def totals(ctx: perper.Context, orders: perper.StreamRef):
    total = 0
    async for order in ctx.read(orders):
        total += order["amount"]
        yield total


@ingesting.launcher
async def ingest_main(ctx: perper.Context, orders: perper.StreamRef):
    await ctx.start(totals, orders)


def test_ingest_streams_are_fed_from_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "ingest.db"

    async def body() -> None:
        async with SQLiteStore(path) as store:
            await store.append("r/orders", 0, [{"amount": a} for a in (5, 7, 11)])
            await store.seal("r/orders")
            runtime = perper.Runtime(store, ingesting, entropy=random.Random(0))
            (await runtime.run("r", {"orders": perper.StreamRef("r/orders")})).raise_on_failure()

    asyncio.run(body())
    [run] = replay_graph(path, ingesting).runs
    assert run.outcome == IDENTICAL
    streams = {s.stream: s for s in run.streams}
    assert streams["r/orders"].function == ""
    assert streams["r/orders"].items_compared == 3
    assert streams["r/totals-0"].items_compared == 3


def test_a_run_recorded_mid_stream_is_compared_as_far_as_it_got(tmp_path: Path) -> None:
    path = tmp_path / "live.db"

    async def body() -> None:
        async with SQLiteStore(path) as store:
            await store.append("r/orders", 0, [{"amount": 1}] * 4)  # never sealed
            runtime = perper.Runtime(store, ingesting, entropy=random.Random(0), batch_size=1)
            task = asyncio.ensure_future(runtime.run("r", {"orders": perper.StreamRef("r/orders")}))
            for _ in range(1000):
                if await store.head("r/totals-0") == 4:
                    break
                await asyncio.sleep(0.005)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())
    [run] = replay_graph(path, ingesting).runs
    assert run.outcome == IDENTICAL, run.describe()
    assert any("stopped making progress: r/totals-0 wait for input" in n for n in run.notes)
    assert {s.stream: s.items_compared for s in run.streams}["r/totals-0"] == 4
