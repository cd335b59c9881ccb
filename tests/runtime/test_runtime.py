"""The runtime against every store kind: graphs, cycles, failures, relaunch, effects."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.app import load_app
from perper.errors import ConfigError, NondeterminismError
from perper.runtime import Runtime
from perper.runtime.listing import list_streams
from perper.store import LogStore
from tests.conftest import EXAMPLES

basic = load_app(EXAMPLES / "basic.py")
cycle = load_app(EXAMPLES / "cycle.py")


async def items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def test_the_basic_graph_stores_every_item_of_every_function(store: LogStore) -> None:
    result = await Runtime(store, basic, batch_size=7).run("r1", {"count": 100})
    assert result.ok and not result.failures
    assert await items(store, "r1/generator-0") == [{"value": i} for i in range(100)]
    batches = await items(store, "r1/processor-1")
    assert batches == [list(range(i, min(i + 3, 100))) for i in range(0, 100, 3)]
    rows = await list_streams(store, run="r1")
    assert [(r.name, r.function, r.items, r.status) for r in rows] == [
        ("r1/generator-0", "generator", 100, "done"),
        ("r1/processor-1", "processor", 34, "done"),
        ("r1/consumer-2", "consumer", 0, "done"),
    ]


async def test_the_consumer_logs_every_batch(
    store: LogStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="basic.consumer")
    await Runtime(store, basic).run("r1", {"count": 10})
    received = [r.getMessage() for r in caplog.records if r.name == "basic.consumer"]
    assert received == [
        "consumer received [0, 1, 2]",
        "consumer received [3, 4, 5]",
        "consumer received [6, 7, 8]",
        "consumer received [9]",
    ]


async def test_a_cyclic_graph_runs_to_its_bound(store: LogStore) -> None:
    result = await Runtime(store, cycle).run("c", {"bound": 20})
    assert result.ok
    assert await items(store, "c/ping-0") == list(range(0, 21, 2))
    assert await items(store, "c/pong-1") == list(range(1, 22, 2))


async def test_running_a_done_run_again_changes_nothing(store: LogStore) -> None:
    await Runtime(store, basic).run("r1", {"count": 50})
    before = [(s.name, s.head) for s in await store.streams()]
    again = await Runtime(store, basic).run("r1", {"count": 50})
    assert again.already_done and again.ok
    assert [(s.name, s.head) for s in await store.streams()] == before


async def test_an_interrupted_run_resumes_to_the_same_streams(
    store: LogStore, tmp_path: Path
) -> None:
    reference = perper.open_store("memory://")
    await Runtime(reference, basic, batch_size=50).run("r1", {"count": 3000})

    task = asyncio.ensure_future(Runtime(store, basic, batch_size=50).run("r1", {"count": 3000}))
    while await store.head("r1/processor-1") < 300:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.head("r1/generator-0") < 3000  # really interrupted

    result = await Runtime(store, basic, batch_size=50).run("r1", {"count": 3000})
    assert result.ok and not result.already_done
    for name in ["r1/generator-0", "r1/processor-1"]:
        assert await items(store, name) == await items(reference, name)


async def test_resuming_with_other_parameters_is_refused(store: LogStore) -> None:
    await Runtime(store, basic).run("r1", {"count": 5})
    with pytest.raises(ConfigError, match="was started with parameters"):
        await Runtime(store, basic).run("r1", {"count": 6})


async def test_unknown_launcher_parameters_are_refused(store: LogStore) -> None:
    with pytest.raises(ConfigError, match="unexpected keyword argument 'cuont'"):
        await Runtime(store, basic).run("r1", {"cuont": 5})


async def test_a_bad_run_name_is_refused(store: LogStore) -> None:
    with pytest.raises(ConfigError, match="run name 'a/b' is not valid"):
        await Runtime(store, basic).run("a/b")


# ---------------------------------------------------------------- failures

flaky = perper.App("flaky")
attempts: dict[str, int] = {}


@flaky.stream
async def numbers(ctx: perper.Context, count: int, fail_at: int):
    attempts[ctx.execution] = attempts.get(ctx.execution, 0) + 1
    for i in range(count):
        if i == fail_at and attempts[ctx.execution] == 1:
            raise RuntimeError(f"boom at {i}")
        yield i


@flaky.action
async def sink(ctx: perper.Context, source: perper.StreamRef):
    async for _ in ctx.read(source):
        pass


@flaky.launcher
async def flaky_main(ctx: perper.Context, count: int = 10, fail_at: int = 5):
    await ctx.start(sink, await ctx.start(numbers, count=count, fail_at=fail_at))


async def test_a_raising_function_fails_the_run_and_keeps_its_items(store: LogStore) -> None:
    attempts.clear()
    result = await Runtime(store, flaky).run("f", {"count": 10, "fail_at": 5})
    assert result.status == "failed"
    [failure] = result.failures
    assert failure.execution == "f/numbers-0" and failure.function == "numbers"
    assert "RuntimeError: boom at 5" in failure.error and "Traceback" in failure.error
    assert await items(store, "f/numbers-0") == [0, 1, 2, 3, 4]
    rows = {r.name: r.status for r in await list_streams(store, run="f")}
    assert rows["f/numbers-0"] == "failed"
    with pytest.raises(perper.ExecutionFailedError, match="boom at 5"):
        result.raise_on_failure()


async def test_resuming_a_failed_run_retries_the_failed_execution(store: LogStore) -> None:
    attempts.clear()
    assert (await Runtime(store, flaky).run("f", {"count": 10, "fail_at": 5})).status == "failed"
    result = await Runtime(store, flaky).run("f", {"count": 10, "fail_at": 5})
    assert result.ok
    assert await items(store, "f/numbers-0") == list(range(10))


bad = perper.App("bad")


@bad.stream
async def sets(ctx: perper.Context):
    yield [1]
    yield {"tags": {"a", "b"}}


@bad.launcher
async def bad_main(ctx: perper.Context):
    await ctx.start(sets)


async def test_yielding_an_unencodable_item_names_function_seq_and_type(store: LogStore) -> None:
    result = await Runtime(store, bad).run("b")
    [failure] = result.failures
    assert "cannot encode set at 'sets''s item at seq 1['tags']" in failure.error


async def test_starting_something_that_is_not_a_stream_function_is_refused(
    store: LogStore,
) -> None:
    app = perper.App("wrong")

    async def plain(ctx: perper.Context) -> None:
        pass

    @app.launcher
    async def main(ctx: perper.Context):
        await ctx.start(plain)

    result = await Runtime(store, app).run("w")
    assert "ctx.start and ctx.declare take a function decorated with @app.stream" in (
        result.failures[0].error
    )


# ----------------------------------------------------------------- effects

effects = perper.App("effects")


@effects.stream
async def stamped(ctx: perper.Context, count: int):
    attempts[ctx.execution] = attempts.get(ctx.execution, 0) + 1
    for i in range(count):
        yield {"i": i, "now": ctx.now(), "random": ctx.random(), "uuid": str(ctx.uuid())}
        if i == count // 2 and attempts[ctx.execution] == 1:
            raise RuntimeError("crash mid-stream")


@effects.stream
async def wall_clock(ctx: perper.Context, count: int):
    attempts[ctx.execution] = attempts.get(ctx.execution, 0) + 1
    for i in range(count):
        yield {"i": i, "now": time.time()}
        if i == count // 2 and attempts[ctx.execution] == 1:
            raise RuntimeError("crash mid-stream")


@effects.launcher
async def effects_main(ctx: perper.Context, function: str, count: int = 6):
    await ctx.start(stamped if function == "stamped" else wall_clock, count=count)


async def test_recorded_effects_return_the_recorded_values_on_re_execution(
    store: LogStore,
) -> None:
    attempts.clear()
    ticks = itertools.count(1000.0)
    first = Runtime(store, effects, clock=lambda: next(ticks), entropy=random.Random(1))
    assert (await first.run("e", {"function": "stamped"})).status == "failed"
    written = await items(store, "e/stamped-0")
    stamps = [item["now"] for item in written]  # the run record's start took one tick
    assert stamps == [1001.0, 1002.0, 1003.0, 1004.0]
    run = await store.meta_get("runs", "e")
    assert run is not None and run.value["started"] == 1000.0

    later = itertools.count(5000.0)
    second = Runtime(store, effects, clock=lambda: next(later), entropy=random.Random(2))
    assert (await second.run("e", {"function": "stamped"})).ok
    final = await items(store, "e/stamped-0")
    assert final[:4] == written  # re-yielded from the record, so verified equal
    assert [item["now"] for item in final[4:]] == [5000.0, 5001.0]  # new effects are new
    assert len({item["uuid"] for item in final}) == 6


async def test_a_function_reading_the_wall_clock_is_caught_on_re_execution(
    store: LogStore,
) -> None:
    attempts.clear()
    assert (await Runtime(store, effects).run("w", {"function": "wall_clock"})).status == "failed"
    await asyncio.sleep(0.01)
    result = await Runtime(store, effects).run("w", {"function": "wall_clock"})
    [failure] = result.failures
    assert "NondeterminismError" in failure.error
    assert (
        "execution 'w/wall_clock-0' (function 'wall_clock') is not deterministic" in failure.error
    )
    assert "at seq 0" in failure.error and "item['now']: expected" in failure.error
    assert len(await items(store, "w/wall_clock-0")) == 4  # nothing overwritten


async def test_a_launcher_that_starts_with_other_parameters_is_caught(store: LogStore) -> None:
    app = perper.App("changing")
    seen: list[int] = []

    @app.stream
    async def gen(ctx: perper.Context, count: int):
        for i in range(count):
            yield i

    @app.launcher
    async def main(ctx: perper.Context):
        seen.append(1)
        await ctx.start(gen, count=len(seen))
        if len(seen) == 1:
            raise RuntimeError("launcher crashed")

    assert (await Runtime(store, app).run("x")).status == "failed"
    result = await Runtime(store, app).run("x")
    assert "NondeterminismError" in result.failures[0].error
    assert "start['params']['count']: expected 1, got 2" in result.failures[0].error


def test_nondeterminism_errors_show_stored_new_and_how_to_fix() -> None:
    error = NondeterminismError(
        execution="r/f-0", function="f", seq=3, stored={"a": 1}, new={"a": 2}, diff="item['a']"
    )
    text = str(error)
    assert "stored: {'a': 1}" in text and "new:    {'a': 2}" in text and "ctx.now()" in text
