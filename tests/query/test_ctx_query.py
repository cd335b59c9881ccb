"""ctx.query inside functions: indexed outputs and ingest streams, the recorded position,
recovery in both modes, and replay of an exported log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.replay import replay_async
from perper.runtime import Runtime
from perper.store import LogStore, open_store
from perper.store.mirror import copy_store

ORDERS = "r/orders"
REQUESTS = "r/requests"


def make_app(recovery: str) -> perper.App:
    app = perper.App(f"lookups-{recovery}")

    @app.stream(recovery=recovery, checkpoint_every=1)
    async def lookup(ctx: perper.Context, requests: perper.StreamRef, orders: perper.StreamRef):
        async for user in ctx.read(requests):
            found = [seq async for seq, _ in ctx.query(orders, "user = ?", [user])]
            yield {"user": user, "seqs": found}

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        orders = ctx.ingest("orders", index={"user": int, "amount": float})
        await ctx.start(lookup, ctx.ingest("requests"), orders)

    return app


async def items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def wait_for_head(store: LogStore, stream: str, head: int) -> None:
    async with asyncio.timeout(10):
        while await store.head(stream) < head:
            await store.wait(stream, head - 1, timeout=0.05)


def order(i: int) -> dict[str, Any]:
    return {"user": i % 4, "amount": float(i)}


@pytest.mark.parametrize("recovery", ["replay", "checkpoint"])
async def test_a_query_killed_and_resumed_gives_the_same_rows_and_replays_from_an_export(
    store: LogStore, recovery: str, tmp_path: Path
) -> None:
    app = make_app(recovery)
    async with (
        perper.Producer(store, ORDERS, index={"user": int, "amount": float}) as orders,
        perper.Producer(store, REQUESTS) as requests,
    ):
        await orders.send_many([order(i) for i in range(10)])
        await requests.send(1)
        task = asyncio.ensure_future(Runtime(store, app, lease_ttl=0.2).run("r"))
        await wait_for_head(store, "r/lookup-0", 1)
        task.cancel()  # killed mid-stream: the requests stream is not finished
        with pytest.raises(asyncio.CancelledError):
            await task
        # More orders arrive while nothing runs: a query asked anew would see them.
        await orders.send_many([order(i) for i in range(10, 20)])
        await requests.send(1)
        await requests.seal()
    assert (await Runtime(store, app, lease_ttl=0.2).run("r")).ok
    assert await items(store, "r/lookup-0") == [
        {"user": 1, "seqs": [1, 5, 9]},  # as of the recorded head, 10
        {"user": 1, "seqs": [1, 5, 9, 13, 17]},
    ]
    assert await items(store, "r/lookup-0#effects") == [["query", 10], ["query", 20]]
    (await replay_async(store, app)).raise_on_failure()
    exported = f"sqlite:///{tmp_path / 'export.db'}"
    async with open_store(exported) as copy:
        await copy_store(store, copy, run="r")
    async with open_store(exported) as copy:
        assert await copy.index_of(ORDERS) == (("user", "int"), ("amount", "float"))
        result = await replay_async(copy, app)
    result.raise_on_failure()


def indexed_app() -> perper.App:
    app = perper.App("indexed")

    @app.stream(index={"user": int, "amount": float})
    async def orders(ctx: perper.Context, count: int):
        for i in range(count):
            yield order(i)

    @app.stream
    async def biggest(ctx: perper.Context, source: perper.StreamRef):
        async for _ in ctx.read(source):
            pass
        async for seq, item in ctx.query(source, "user = ?", [2], order_by="amount DESC", limit=2):
            yield [seq, item["amount"]]

    @app.launcher
    async def main(ctx: perper.Context, count: int = 12) -> None:
        source = await ctx.start(orders, count=count)
        await ctx.start(biggest, source)

    return app


async def test_an_indexed_stream_function_is_queryable_inside_and_outside(
    store: LogStore,
) -> None:
    app = indexed_app()
    assert (await Runtime(store, app).run("run")).ok
    assert await store.indexes(prefix="run/") == {
        "run/orders-0": (("user", "int"), ("amount", "float"))
    }
    assert await items(store, "run/biggest-1") == [[10, 10.0], [6, 6.0]]
    found = [seq async for seq, _ in store.query("run/orders-0", "user = ?", [3])]
    assert found == [3, 7, 11]


async def test_a_bad_condition_fails_the_function_naming_the_indexed_fields(
    store: LogStore,
) -> None:
    app = perper.App("bad")

    @app.stream(index={"user": int})
    async def source(ctx: perper.Context):
        yield {"user": 1}

    @app.stream
    async def asks(ctx: perper.Context, ref: perper.StreamRef):
        async for row in ctx.query(ref, "customer = 1"):
            yield row

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(asks, await ctx.start(source))

    result = await Runtime(store, app).run("b")
    assert not result.ok
    assert "'customer', which is not an indexed field; the indexed fields are seq, user" in (
        result.failures[0].error
    )


def test_a_bad_index_declaration_is_refused_when_the_function_is_declared() -> None:
    app = perper.App("declared")
    with pytest.raises(perper.ConfigError, match="index fields are one of int, float"):

        @app.stream(index={"user": dict})
        async def broken(ctx: perper.Context):
            yield 1
