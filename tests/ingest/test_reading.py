"""ctx.ingest and read positions: start=N, start="live" (recorded), with_seq."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import perper
from perper.errors import ConfigError
from perper.replay import replay_async, replay_graph_async
from perper.runtime import Runtime
from perper.store import LogStore

app = perper.App("reading")


@app.stream
async def echo(ctx: perper.Context, source: perper.StreamRef, start: Any):
    async for seq, item in ctx.read(source, start=start, with_seq=True):
        yield [seq, item]


@app.launcher
async def main(ctx: perper.Context, start: Any = 0):
    await ctx.start(echo, ctx.ingest("events"), start=start)


EVENTS = "r/events"
ECHO = "r/echo-0"


async def items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def wait_for_head(store: LogStore, stream: str, head: int) -> None:
    """Wait (at most 10 s of loop time) until ``stream`` holds ``head`` items."""
    async with asyncio.timeout(10):
        while await store.head(stream) < head:
            await store.wait(stream, head - 1, timeout=0.05)


async def test_ctx_ingest_names_the_runs_stream_and_refuses_bad_names(store: LogStore) -> None:
    seen: list[Any] = []
    names = perper.App("names")

    @names.launcher
    async def launch(ctx: perper.Context) -> None:
        seen.append(ctx.ingest("clicks"))
        for bad in ["", "a/b", "x#y"]:
            with pytest.raises(ConfigError, match="name the ingest stream"):
                ctx.ingest(bad)

    assert (await Runtime(store, names).run("shop")).ok
    assert seen == [perper.StreamRef("shop/clicks")]


async def test_reading_from_a_seq_skips_the_items_before_it(store: LogStore) -> None:
    async with perper.Producer(store, EVENTS) as events:
        await events.send_many(["a", "b", "c", "d"])
        await events.seal()
    assert (await Runtime(store, app).run("r", {"start": 2})).ok
    assert await items(store, ECHO) == [[2, "c"], [3, "d"]]


async def test_a_bad_start_is_refused_naming_the_value(store: LogStore) -> None:
    result = await Runtime(store, app).run("r", {"start": "soon"})
    assert not result.ok
    assert "start='soon'" in result.failures[0].error


async def test_reading_live_starts_at_the_head_and_replay_reads_the_same_items(
    store: LogStore,
) -> None:
    async with perper.Producer(store, EVENTS) as events:
        await events.send_many(["old-0", "old-1", "old-2"], keys=["0", "1", "2"])
        task = asyncio.ensure_future(Runtime(store, app).run("r", {"start": "live"}))
        # The live position is a recorded effect, flushed before echo blocks on the stream.
        await wait_for_head(store, ECHO + "#effects", 1)
        await events.send_many(["new-3", "new-4"], keys=["3", "4"])
        await events.seal()
        assert (await task).ok
    assert await items(store, ECHO + "#effects") == [["live", 3]]
    assert await items(store, ECHO) == [[3, "new-3"], [4, "new-4"]]
    (await replay_async(store, app)).raise_on_failure()
    (await replay_graph_async(store, app)).raise_on_failure()


async def test_a_recovered_live_read_starts_at_the_recorded_head_not_the_new_one(
    store: LogStore,
) -> None:
    async with perper.Producer(store, EVENTS) as events:
        await events.send_many(["old-0", "old-1"])
        task = asyncio.ensure_future(Runtime(store, app, lease_ttl=0.2).run("r", {"start": "live"}))
        await wait_for_head(store, ECHO + "#effects", 1)
        await events.send("new-2")
        await wait_for_head(store, ECHO, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # While nobody runs the run, more items arrive: a fresh live read would skip them.
        await events.send_many(["new-3", "new-4"])
        await events.seal()
    assert (await Runtime(store, app, lease_ttl=0.2).run("r", {"start": "live"})).ok
    assert await items(store, ECHO) == [[2, "new-2"], [3, "new-3"], [4, "new-4"]]


late = perper.App("late")


@late.stream
async def late_reader(ctx: perper.Context, source: perper.StreamRef, go: perper.StreamRef):
    live = ctx.read(source, start="live", with_seq=True)  # the head now: 3
    ctx.now()  # an effect after the live one: replay must take them in this order
    async for _ in ctx.read(go):  # items arrive on source meanwhile
        break
    async for seq, item in live:
        yield [seq, item]


@late.launcher
async def late_main(ctx: perper.Context):
    await ctx.start(late_reader, ctx.ingest("events"), ctx.ingest("go"))


async def test_a_live_read_starts_at_the_head_of_its_call_not_of_its_first_item(
    store: LogStore,
) -> None:
    reader = "r/late_reader-0"
    async with perper.Producer(store, EVENTS) as events, perper.Producer(store, "r/go") as go:
        await events.send_many(["old-0", "old-1", "old-2"])
        task = asyncio.ensure_future(Runtime(store, late).run("r"))
        # Recorded before the reader blocks on "go", though its loop has not begun.
        await wait_for_head(store, reader + "#effects", 2)
        await events.send_many(["new-3", "new-4"])
        await go.send("go")
        await events.seal()
        await go.seal()
        assert (await task).ok
    effects = await items(store, reader + "#effects")
    assert [kind for kind, _ in effects] == ["live", "now"] and effects[0][1] == 3
    assert await items(store, reader) == [[3, "new-3"], [4, "new-4"]]
    (await replay_async(store, late)).raise_on_failure()
