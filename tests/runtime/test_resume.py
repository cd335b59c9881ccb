"""Resuming checkpoint-mode functions after a crash at any point: each item once.

The crashes here are injected by the store (a write that kills the worker, as kill -9
would, before or after it lands), so these tests need nothing but the public runtime.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

import perper
from perper.errors import ConfigError
from perper.runtime import Runtime
from perper.runtime.leases import Lease
from perper.store.memory import MemoryStore
from perper.testing.recovery import stage_execution

app = perper.App("resume")


class Crash(BaseException):
    """The worker dies here."""


class CrashingStore(MemoryStore):
    """A MemoryStore that kills the worker at the n-th call matching a condition."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_seal_of: str | None = None
        self.crash_at_checkpoint: int | None = None
        self._checkpoints = 0

    async def seal(self, stream: str, *, epoch: int = 0) -> None:
        if stream == self.crash_seal_of:
            self.crash_seal_of = None
            raise Crash()
        await super().seal(stream, epoch=epoch)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        if table == "checkpoints" and self.crash_at_checkpoint is not None:
            self._checkpoints += 1
            if self._checkpoints == self.crash_at_checkpoint:
                self.crash_at_checkpoint = None
                raise Crash()
        return await super().meta_cas(table, key, value, version=version)


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint")
async def total(ctx: perper.Context, source: perper.StreamRef):
    ctx.state.setdefault("sum", 0)
    async for x in ctx.read(source):
        ctx.state["sum"] += x
    yield ctx.state["sum"]


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def headed(ctx: perper.Context, source: perper.StreamRef):
    yield "header"
    async for x in ctx.read(source):
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        yield x


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def seeded(ctx: perper.Context, source: perper.StreamRef):
    seed = ctx.random()
    async for x in ctx.read(source):
        yield [seed, x]


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def starter(ctx: perper.Context, source: perper.StreamRef):
    await ctx.start(numbers, count=2)
    async for x in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + x
        yield ctx.state["sum"]


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def early_exit(ctx: perper.Context, source: perper.StreamRef, rest: perper.StreamRef):
    async for x in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + x
        yield ctx.state["sum"]
        if x >= 3:
            break
    yield "between"
    async for y in ctx.read(rest):
        ctx.state["rest"] = ctx.state.get("rest", 0) + y
    yield {"sum": ctx.state["sum"], "rest": ctx.state.get("rest", 0)}


def runtime(store: MemoryStore, worker: str, seed: int = 0) -> Runtime:
    return Runtime(store, app, worker_id=worker, entropy=random.Random(seed), clock=lambda: 0.0)


async def crash_then_recover(
    store: CrashingStore,
    fn: perper.app.StreamFunction,
    inputs: list[Any] | dict[str, list[Any]],
    arm: Callable[[], None],
) -> list[Any]:
    """Run ``fn`` over ``inputs`` until the armed crash, free its lease as its expiry
    would, run it again on a fresh worker and return its output."""
    named = inputs if isinstance(inputs, dict) else {"source": inputs}
    execution = await stage_execution(runtime(store, "setup"), fn, named, {}, run="r")
    arm()
    with pytest.raises(Crash):
        await runtime(store, "crashing", seed=1).execute(execution)
    entry = await store.meta_get("leases", execution)
    assert entry is not None
    freed = Lease(None, Lease.from_meta(entry.value).epoch).to_meta()
    await store.meta_cas("leases", execution, freed, version=entry.version)
    await runtime(store, "recovering", seed=2).execute(execution)
    record = await store.meta_get("executions", execution)
    assert record is not None and record.value["status"] == "done"
    return [item async for _, item in store.read(execution)]


async def test_a_total_yielded_after_the_input_loop_is_written_once_after_a_crash_before_the_seal() -> (
    None
):
    store = CrashingStore()

    def arm() -> None:
        store.crash_seal_of = "r/total-0"

    assert await crash_then_recover(store, total, list(range(20)), arm) == [190]


async def test_items_yielded_before_the_first_read_are_not_written_again_on_resumption() -> None:
    store = CrashingStore()

    def arm() -> None:
        store.crash_at_checkpoint = 4  # resumes from the third checkpoint

    output = await crash_then_recover(store, headed, [7, 8, 9, 10, 11], arm)
    assert output == ["header", 7, 8, 9, 10, 11]


async def test_effects_taken_before_the_first_read_keep_their_recorded_value() -> None:
    store = CrashingStore()

    def arm() -> None:
        store.crash_at_checkpoint = 4

    output = await crash_then_recover(store, seeded, [1, 2, 3, 4, 5, 6], arm)
    assert [x for _, x in output] == [1, 2, 3, 4, 5, 6]
    assert len({seed for seed, _ in output}) == 1, output


async def test_a_start_before_the_first_read_reattaches_to_the_same_child() -> None:
    store = CrashingStore()

    def arm() -> None:
        store.crash_at_checkpoint = 3

    output = await crash_then_recover(store, starter, [1, 2, 3, 4], arm)
    assert output == [1, 3, 6, 10]
    children = [key for key, _ in await store.meta_scan("executions", prefix="r/starter-0/")]
    assert children == ["r/starter-0/numbers-0"]


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4, 5])
async def test_a_loop_left_early_and_the_code_after_it_resume_from_any_checkpoint(
    crash_at: int,
) -> None:
    store = CrashingStore()

    def arm() -> None:
        store.crash_at_checkpoint = crash_at

    inputs = {"source": [1, 2, 3, 4, 5], "rest": [10, 20]}
    output = await crash_then_recover(store, early_exit, inputs, arm)
    assert output == [1, 3, 6, "between", {"sum": 6, "rest": 30}]


# ------------------------------------------------------------------- runaways


runaway = perper.App("runaway")


@runaway.stream
async def deeper(ctx: perper.Context, level: int):
    await ctx.start(deeper, level + 1)
    yield level


@runaway.launcher
async def dig(ctx: perper.Context):
    await ctx.start(deeper, 0)


wide = perper.App("wide")


@wide.stream(name="f" * 300)
async def long_named(ctx: perper.Context, level: int):
    await ctx.start(long_named, level + 1)
    yield level


@wide.launcher
async def grow(ctx: perper.Context):
    await ctx.start(long_named, 0)


async def test_unbounded_start_recursion_fails_with_the_depth_limit() -> None:
    result = await asyncio.wait_for(Runtime(MemoryStore(), runaway).run("deep"), 60)
    assert result.status == "failed"
    error = result.failures[0].error
    assert "ConfigError" in error and "nests at most 64 deep" in error
    assert result.failures[0].execution.count("/") == 64


async def test_derived_names_longer_than_the_limit_fail_with_a_clear_error() -> None:
    result = await asyncio.wait_for(Runtime(MemoryStore(), wide).run("long"), 60)
    assert result.status == "failed"
    assert "execution ids are at most 1024 characters" in result.failures[0].error


# ------------------------------------------------------------- silent waits


later = perper.App("later")


@later.stream
async def doubled(ctx: perper.Context, source: perper.StreamRef):
    async for x in ctx.read(source):
        yield 2 * x


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_read_of_a_stream_nothing_writes_says_so_and_still_reads_it_once_filled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    worker = Runtime(store, later, read_wait_warning=0.05, entropy=random.Random(0))
    execution = await stage_execution(
        worker, doubled, {}, {"source": perper.StreamRef("w/ingest")}, run="w"
    )
    caplog.set_level(logging.WARNING, logger="perper.runtime")
    task = asyncio.ensure_future(worker.execute(execution))
    await until(lambda: "no execution writes" in caplog.text)
    message = caplog.text
    assert "'w/ingest'" in message and execution in message and "producer" in message
    assert not task.done()
    await store.append("w/ingest", 0, [1, 2, 3])
    await store.seal("w/ingest")
    await asyncio.wait_for(task, 10)
    assert [item async for _, item in store.read(execution)] == [2, 4, 6]


def test_settings_out_of_range_or_unknown_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="batch_size=0 must be"):
        Runtime(MemoryStore(), later, batch_size=0)
    with pytest.raises(ConfigError, match="'batchsize' is not a runtime setting"):
        Runtime(MemoryStore(), later, batchsize=5)
    with pytest.raises(ConfigError, match="lease_ttl=-1 must be a positive"):
        perper.runtime.RuntimeSettings(lease_ttl=-1)


# ------------------------------------------------------------ encode errors

bad = perper.App("bad")


@bad.stream
async def odd_items(ctx: perper.Context, kind: str):
    yield {"fine": 1}
    if kind == "key":
        yield {"when": {datetime.datetime(2024, 1, 1): 1}}
    elif kind == "surrogate":
        yield {"text": "\udc80"}
    else:
        deep: list[object] = []
        for _ in range(1000):
            deep = [deep]
        yield deep


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("key", "cannot encode datetime as a map key at 'odd_items''s item at seq 1['when'] key"),
        (
            "surrogate",
            "str with a lone surrogate (not valid UTF-8) at 'odd_items''s item at seq 1['text']",
        ),
        ("deep", "list nested deeper than 254 levels at 'odd_items''s item at seq 1[0][0]"),
    ],
)
async def test_an_unencodable_item_names_the_function_the_seq_the_path_and_the_type(
    kind: str, expected: str
) -> None:
    store = MemoryStore()
    worker = Runtime(store, bad, entropy=random.Random(0))
    execution = await stage_execution(worker, odd_items, {}, {"kind": kind}, run="b")
    with pytest.raises(perper.errors.ExecutionFailedError) as caught:
        await worker.execute(execution)
    assert expected in caught.value.error
    assert "RecursionError" not in caught.value.error


# ------------------------------------------------- failures that cannot be recorded


class FlakyStatusStore(MemoryStore):
    """Refuses the first write that marks an execution failed, as an unreachable store."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        if table == "executions" and value.get("status") == "failed" and not self.refused:
            self.refused += 1
            raise perper.errors.StoreUnavailableError("store unreachable (test)")
        return await super().meta_cas(table, key, value, version=version)


failing = perper.App("failing")


@failing.stream
async def boom(ctx: perper.Context):
    yield 1
    raise ValueError("boom")


@failing.launcher
async def start_boom(ctx: perper.Context):
    await ctx.start(boom)


async def test_a_failure_the_store_refuses_to_record_is_retried_not_stranded() -> None:
    store = FlakyStatusStore()
    worker = Runtime(store, failing, entropy=random.Random(0), poll_interval=0.01)
    result = await asyncio.wait_for(worker.run("f"), 30)
    assert store.refused == 1
    assert result.status == "failed" and "ValueError: boom" in result.failures[0].error
