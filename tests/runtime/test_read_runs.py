"""ctx.read hands a decoded segment over in runs: what must still happen at the next item."""

from __future__ import annotations

import asyncio

import perper
from perper.runtime import Runtime
from perper.store import LogStore

app = perper.App("runs")
#: Set by the consumer once it holds item 500 of the one stored segment (per test run).
halfway: list[asyncio.Event] = []


@app.stream
async def generator(ctx: perper.Context, count: int):
    for i in range(count):
        yield i


@app.action(recovery="checkpoint", checkpoint_every=1_000_000)
async def consumer(ctx: perper.Context, source: perper.StreamRef):
    state = ctx.state
    state.setdefault("seen", 0)
    async for _ in ctx.read(source):
        state["seen"] += 1
        if state["seen"] == 500:
            halfway[-1].set()
        if state["seen"] >= 500:
            await asyncio.sleep(0)  # let the worker notice its stop event


@app.launcher
async def main(ctx: perper.Context, count: int):
    await ctx.start(consumer, await ctx.start(generator, count=count))


async def test_a_graceful_stop_inside_a_stored_segment_stops_the_reader_at_its_next_item(
    store: LogStore,
) -> None:
    halfway.append(asyncio.Event())
    runtime = Runtime(store, app, batch_size=10_000)
    await runtime.prepare_run("r", {"count": 2000})
    await runtime.work(stop=halfway[-1])
    # One segment of 2,000 items, and the countdown (a million) never runs out: only the
    # stop, seen at the next item, can have ended the read inside the segment.
    assert [count async for _, count, _ in store.segments("r/generator-0")] == [2000]
    checkpoint = await store.meta_get("checkpoints", "r/consumer-1")
    assert checkpoint is not None
    position = checkpoint.value["positions"][0][1]
    # Inside the segment (a read that only looks at stops between segments ends at 2000);
    # how far past item 500 depends on the loop turns the worker takes to see its stop,
    # more over a network store.
    assert 500 <= position < 2000
    assert checkpoint.value["state"]["seen"] == position

    result = await Runtime(store, app).run("r", {"count": 2000})
    assert result.ok
    final = await store.meta_get("checkpoints", "r/consumer-1")
    assert final is not None and final.value["state"]["seen"] == 2000
