"""How a checkpoint is written: once encoded, without reading the previous one back,
still fenced, and with an error naming ctx.state when the state cannot be encoded."""

from __future__ import annotations

import asyncio
from typing import Any

import perper
from perper.runtime import Runtime
from perper.store.memory import MemoryStore

app = perper.App("checkpoints")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def running_sum(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + number
        yield ctx.state["sum"]


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def hoarder(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["seen"] = {number}  # a set: msgpack has none
        yield number


@app.launcher
async def main(ctx: perper.Context, count: int = 40, hoard: bool = False):
    source = await ctx.start(numbers, count=count)
    await ctx.start(hoarder if hoard else running_sum, source)


SUM = "c/running_sum-1"


class CountingStore(MemoryStore):
    """A MemoryStore that counts reads and writes of one execution's checkpoint, and can
    let another owner (epoch 99) write it just before the Nth write of this one."""

    def __init__(self, key: str, *, rival_before_write: int | None = None) -> None:
        super().__init__()
        self.key = key
        self.reads = 0
        self.writes = 0
        self.rival_before_write = rival_before_write
        self.rival_wrote = False
        self.reads_after_rival = 0

    async def meta_get(self, table: str, key: str) -> Any:
        if (table, key) == ("checkpoints", self.key):
            self.reads += 1
            self.reads_after_rival += self.rival_wrote
        return await super().meta_get(table, key)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        if (table, key) == ("checkpoints", self.key):
            self.writes += 1
            if self.writes == self.rival_before_write:
                current = await super().meta_get(table, key)
                assert current is not None
                rival = {**current.value, "epoch": 99, "state": {"rival": True}}
                await super().meta_cas(table, key, rival, version=current.version)
                self.rival_wrote = True
        return await super().meta_cas(table, key, value, version=version)


async def test_checkpoints_after_the_first_are_written_without_reading_the_last_one_back() -> None:
    store = CountingStore(SUM)
    result = await Runtime(store, app, batch_size=1).run("c", {"count": 40})
    assert result.ok
    sums = [item async for _, item in store.read(SUM)]
    assert sums == [sum(range(i + 1)) for i in range(40)]
    assert store.writes >= 40  # one checkpoint per item at least
    # The restore's look-up and the first write's; every later checkpoint is a
    # compare-and-set on the version this execution wrote last.
    assert store.reads <= 2
    checkpoint = await store.meta_get("checkpoints", SUM)
    assert checkpoint is not None and checkpoint.value["state"] == {"sum": sum(range(40))}


async def test_a_checkpoint_is_not_written_over_one_a_newer_epoch_wrote_meanwhile() -> None:
    store = CountingStore(SUM, rival_before_write=5)
    stop = asyncio.Event()
    runtime = Runtime(store, app, batch_size=1)
    await runtime.prepare_run("c", {"count": 40})
    worker = asyncio.ensure_future(runtime.work(stop=stop))
    for _ in range(500):  # bounded: the rival writes at the 5th checkpoint
        if store.reads_after_rival:  # the fallback read (MemoryStore calls do not
            break  # suspend: its fencing check has run too)
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(worker, 10)
    assert store.rival_wrote
    # The compare-and-set on the version it had written failed; the fallback read the
    # rival's epoch and refused to write over it (FencedError stops the execution).
    checkpoint = await store.meta_get("checkpoints", SUM)
    assert checkpoint is not None
    assert checkpoint.value["epoch"] == 99 and checkpoint.value["state"] == {"rival": True}


async def test_a_state_that_cannot_be_encoded_fails_naming_the_function_and_ctx_state() -> None:
    result = await Runtime(MemoryStore(), app).run("c", {"count": 3, "hoard": True})
    assert not result.ok
    failed = "\n".join(failure.error for failure in result.failures)
    assert "EncodeError" in failed
    assert "'hoarder''s ctx.state['seen']" in failed, failed
