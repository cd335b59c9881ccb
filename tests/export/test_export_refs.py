"""``perper export --run`` (``copy_store(run=...)``) copies the streams outside the run that
it reads even when no parameter names them: a ``perper.StreamRef`` that reached the run
inside an item, or one kept in ``ctx.state``. ``perper replay --graph`` and the simulator
then find them in the exported file (``run_inputs``)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import perper
from perper.replay import replay_graph
from perper.replay.results import IDENTICAL
from perper.runtime import Runtime
from perper.store import open_store
from perper.store.base import encode_segment
from perper.store.mirror import copy_store, run_inputs, segment_refs, selected_streams
from perper.store.sqlite import SQLiteStore

app = perper.App("refs")


@app.stream
async def pointers(ctx: perper.Context, name: str):  # type: ignore[no-untyped-def]
    yield {"source": perper.StreamRef(name)}  # a ref built from a str parameter


@app.stream
async def follower(ctx: perper.Context, pointers: perper.StreamRef):  # type: ignore[no-untyped-def]
    async for item in ctx.read(pointers):
        async for value in ctx.read(item["source"]):
            yield value * 10


@app.stream(recovery="checkpoint")
async def keeper(ctx: perper.Context, name: str):  # type: ignore[no-untyped-def]
    ctx.state.setdefault("source", perper.StreamRef(name))  # in ctx.state only
    async for value in ctx.read(ctx.state["source"]):
        yield value + 1


@app.launcher
async def main(ctx: perper.Context, item_source: str, state_source: str) -> None:
    ref = await ctx.start(pointers, item_source)
    await ctx.start(follower, ref)
    await ctx.start(keeper, state_source)


async def record(store: perper.LogStore) -> None:
    for name, values in (("shop/a", [1, 2, 3]), ("shop/b", [5, 6]), ("shop/c", [7])):
        await store.append(name, 0, values)
        await store.seal(name)
    await store.append("shop/unread", 0, [0])
    # A stream of the run (ingest) whose item names shop/c, which nothing has read yet.
    await store.append("r/links", 0, ["no ref", {"next": [perper.StreamRef("shop/c")]}])
    await store.seal("r/links")
    runtime = Runtime(store, app, entropy=random.Random(0))
    params = {"item_source": "shop/a", "state_source": "shop/b"}
    (await runtime.run("r", params)).raise_on_failure()


async def test_a_run_reads_the_streams_refs_in_its_items_and_its_state_name() -> None:
    async with open_store("memory://") as store:
        await record(store)
        assert await run_inputs(store, "r") == ["shop/a", "shop/b", "shop/c"]
        # Without reading the items: the checkpoints' read positions and refs in ctx.state.
        assert await run_inputs(store, "r", scan_items=False) == ["shop/a", "shop/b"]


async def test_exporting_a_run_copies_the_streams_refs_in_its_items_name(tmp_path: Path) -> None:
    async with open_store("memory://") as src, open_store(f"sqlite:///{tmp_path / 'd.db'}") as dest:
        await record(src)
        stats = await copy_store(src, dest, run="r")
        names = {info.name for info in await dest.streams()}
        assert {"shop/a", "shop/b", "shop/c"} <= names
        assert "shop/unread" not in names
        assert stats.streams == len(names)
        assert [item async for _, item in dest.read("shop/a")] == [1, 2, 3]
        assert (await dest.info("shop/a")).sealed
        assert await run_inputs(dest, "r") == ["shop/a", "shop/b", "shop/c"]
        inputs = [i.name for i in await selected_streams(dest, run="r") if i.name[0] == "s"]
        assert inputs == ["shop/a", "shop/b", "shop/c"]  # what --flat writes tables of


async def test_an_export_resumed_after_the_runs_streams_were_copied_still_finds_the_refs(
    tmp_path: Path,
) -> None:
    async with open_store("memory://") as src, open_store(f"sqlite:///{tmp_path / 'd.db'}") as dest:
        await record(src)
        await copy_store(src, dest, run="r", streams="r/*")  # as if interrupted before
        assert "shop/c" not in {info.name for info in await dest.streams()}
        await copy_store(src, dest, run="r")  # r/links is not read again from the source
        assert [item async for _, item in dest.read("shop/c")] == [7]


def test_a_replay_of_the_exported_run_is_fed_the_streams_its_items_name(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"

    async def export() -> None:
        async with open_store("memory://") as src, SQLiteStore(path) as dest:
            await record(src)
            await copy_store(src, dest, run="r")

    asyncio.run(export())
    [run] = replay_graph(path, app).runs
    assert run.outcome == IDENTICAL, run
    streams = {s.stream: s for s in run.streams}
    assert streams["r/follower-1"].items_compared == 3


def test_only_segments_whose_bytes_hold_a_streamref_header_are_decoded() -> None:
    ref = perper.StreamRef("x" * 300)  # ext 16 header
    assert segment_refs(0, 2, encode_segment([{"a": 1}, "b"])) == set()
    assert segment_refs(0, 1, encode_segment([[212, 2]])) == set()  # a false match, decoded
    for name in ("s", "ab", "abcd", "a" * 8, "a" * 16, "a" * 5, "a" * 200):
        assert segment_refs(0, 1, encode_segment([{"r": perper.StreamRef(name)}])) == {name}
    assert segment_refs(0, 1, encode_segment([[ref]])) == {ref.stream}
