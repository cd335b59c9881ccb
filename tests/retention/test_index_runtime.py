"""An indexed ephemeral stream in a running pipeline: trimmed behind its reader, index rows
included, while the reader's queries keep giving the right rows (also after a crash)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.app import load_app
from perper.errors import ConfigError
from perper.runtime import Runtime, RuntimeSettings
from perper.runtime.retention import query_range
from perper.store import LogStore
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore
from simulator import Simulation
from tests.retention.test_index import index_rows
from tests.retention.test_runtime import Watched, crashed_run

COUNT = 1000
USERS = 7
SETTINGS = RuntimeSettings(batch_size=50)


class OrdersInMemory(Watched, MemoryStore):
    def stored(self) -> int:
        s = self._streams.get("r/orders-0")
        return 0 if s is None else sum(count for count, _ in s.data)


class OrdersInSQLite(Watched, SQLiteStore):
    def stored(self) -> int:
        query = (
            "SELECT coalesce(sum(count), 0) FROM segments JOIN streams ON id = stream_id "
            "WHERE name = 'r/orders-0'"
        )
        return int(self._db.execute(query).fetchone()[0])


def watched(kind: str, tmp_path: Path) -> OrdersInMemory | OrdersInSQLite:
    """A store noting the most items of the ephemeral stream r/orders-0 it held at once."""
    return OrdersInMemory() if kind == "memory" else OrdersInSQLite(tmp_path / "store.db")


def order(i: int) -> dict[str, Any]:
    return {"user": i % USERS, "amount": i}


def build_app(retention: str = "ephemeral", tally: str = "checkpoint") -> perper.App:
    """orders -> picks (which queries orders as it reads it) and tally, a second reader
    in ``tally`` recovery mode."""
    app = perper.App("indexed-retention")

    @app.stream(retention=retention, recovery="checkpoint", index={"user": int})
    async def orders(ctx: perper.Context, count: int) -> Any:
        for i in range(ctx.state.setdefault("next", 0), count):
            ctx.state["next"] = i + 1
            if i % 50 == 0:
                await asyncio.sleep(0)  # a paced source: its reader keeps up and trims
            yield order(i)

    @app.stream(recovery="checkpoint", checkpoint_every=50)
    async def picks(ctx: perper.Context, source: perper.StreamRef) -> Any:
        async for seq, item in ctx.read(source, with_seq=True):
            user = item["user"]
            first = [
                [s, row]
                async for s, row in ctx.query(source, "user = ? AND seq >= ?", [user, seq], limit=1)
            ]
            window = [s async for s, _ in ctx.query(source, "user = ?", [user])]
            yield {"seq": seq, "first": first, "window": [window[0], window[-1], len(window)]}

    @app.stream(recovery=tally, checkpoint_every=200)
    async def tally(ctx: perper.Context, source: perper.StreamRef) -> Any:
        ctx.state.setdefault("count", 0)
        async for _ in ctx.read(source):
            ctx.state["count"] += 1
        yield ctx.state["count"]

    @app.launcher
    async def main(ctx: perper.Context, count: int = COUNT) -> None:
        source = await ctx.start(orders, count=count)
        await ctx.start(picks, source)
        await ctx.start(tally, source)

    return app


async def run(store: LogStore, app: perper.App, worker: str = "1", count: int = COUNT) -> Any:
    runtime = Runtime(
        store, app, settings=SETTINGS, clock=lambda: 0.0, entropy=random.Random(0), worker_id=worker
    )
    return await runtime.run("r", {"count": count})


async def check_picks(store: LogStore, count: int = COUNT) -> list[dict[str, Any]]:
    """Every pick found its own item first, and each query a gap-free run of the user's
    items (from where the stream still held them, up to the query's recorded head)."""
    picks = [item async for _, item in store.read("r/picks-1")]
    assert [p["seq"] for p in picks] == list(range(count))
    # Two queries per pick, each with its recorded [start, stop) in the effects stream.
    effects = [value async for _, (kind, value) in store.read("r/picks-1#effects")]
    assert len(effects) == 2 * count
    for pick in picks:
        seq = pick["seq"]
        assert pick["first"] == [[seq, order(seq)]]
        low, high, count = pick["window"]
        start, stop = query_range(effects[2 * seq + 1])
        assert low % USERS == high % USERS == seq % USERS
        assert low <= seq <= high and count == (high - low) // USERS + 1
        assert low - USERS < start <= low and high < stop <= high + USERS  # all in range
    return picks


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_indexed_ephemeral_pipeline_stays_bounded_and_its_queries_are_right(
    kind: str, tmp_path: Path
) -> None:
    store = watched(kind, tmp_path)
    try:
        result = await run(store, build_app())
        assert result.status == "done", result
        picks = await check_picks(store)
        # Queries late in the run saw only what was still stored: trims had passed seq 0.
        assert picks[-1]["window"][0] > COUNT // 2, picks[-1]
        assert store.most <= 400, f"the store held {store.most} orders at once"
        assert await store.first_seq("r/orders-0") == COUNT
        assert await index_rows(store, "r/orders-0") == []  # the rows went with the items
        assert await store.index_of("r/orders-0") == (("user", "int"),)
    finally:
        await store.close()


async def test_a_query_starts_at_its_readers_checkpoint_while_another_reader_holds_more() -> None:
    # tally in replay mode holds all of orders until it is done; picks' queries still
    # start at picks' own checkpointed position: what a trim may delete once tally is done.
    store = OrdersInMemory()
    result = await run(store, build_app(tally="replay"))
    assert result.status == "done", result
    picks = await check_picks(store)
    effects = [value async for _, (kind, value) in store.read("r/picks-1#effects")]
    starts = [query_range(value)[0] for value in effects[1::2]]
    assert starts == sorted(starts) and starts[-1] >= COUNT - 100, starts[-1]
    assert store.most == COUNT  # nothing was trimmed while tally ran
    assert picks[-1]["window"][0] >= COUNT - 100


@pytest.mark.parametrize("crash_at", [3, 12])
async def test_a_crashed_indexed_ephemeral_pipeline_resumes_with_the_same_rows(
    crash_at: int,
) -> None:
    store = OrdersInMemory()
    store.crash_at_checkpoint = crash_at
    app = build_app()
    await crashed_run(store, run(store, app))
    # Re-yielded picks are compared with the stored ones: a query answering other rows
    # on recovery would fail the run with a NondeterminismError.
    result = await run(store, app, worker="2")
    assert result.status == "done", result
    await check_picks(store)
    assert await store.first_seq("r/orders-0") == COUNT


app = perper.App("destroy-indexed")


@app.stream(index={"user": int})
async def users(ctx: perper.Context) -> Any:
    for i in range(30):
        yield order(i)


@app.stream
async def after(ctx: perper.Context, source: perper.StreamRef) -> Any:
    async for _ in ctx.read(source):
        pass
    before = [s async for s, _ in ctx.query(source, "user = ?", [3])]
    await ctx.destroy(source)
    try:
        _ = [s async for s, _ in ctx.query(source, "user = ?", [3])]
    except ConfigError as error:
        yield {"before": before, "after": str(error)}


@app.launcher
async def launch(ctx: perper.Context) -> None:
    await ctx.start(after, await ctx.start(users))


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_ctx_destroy_of_an_indexed_stream_then_a_query_says_the_stream_is_gone(
    kind: str, tmp_path: Path
) -> None:
    store = watched(kind, tmp_path)
    try:
        result = await Runtime(store, app, settings=SETTINGS, clock=lambda: 0.0).run("r")
        assert result.status == "done", result
        [answer] = [item async for _, item in store.read("r/after-1")]
        assert answer["before"] == [3, 10, 17, 24]
        assert "no stream 'r/users-0'" in answer["after"] and "destroyed" in answer["after"]
        assert await store.indexes() == {}
    finally:
        await store.close()


SIMULATED = load_app(
    Path(__file__).resolve().parents[1] / "simulator" / "apps" / "indexed_ephemeral.py"
)


def test_the_indexed_ephemeral_app_passes_10_seeds_with_every_fault() -> None:
    # 300 seeds by hand: python -m simulator run tests/simulator/apps/indexed_ephemeral.py
    # --seeds 0..299 --faults all
    result = Simulation(SIMULATED).run_seeds(range(10))
    assert result.ok, result.first_failure and result.first_failure.describe()
