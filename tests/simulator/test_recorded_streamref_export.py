"""``perper export --run`` (``copy_store(run=...)``) copies what a recorded run needs to be
replayed or simulated: the streams outside it that it reads, and the agent instances it
started (issue 14)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import perper
from perper.app import load_app
from perper.runtime import Runtime
from perper.store import open_store
from perper.store.flat import flat_table_name, write_flat_tables
from perper.store.mirror import copy_store, run_inputs, selected_streams
from simulator.recorded import load_recorded

from .conftest import APPS, EXAMPLES

outside = load_app(APPS / "outside_clicks.py")
named = load_app(APPS / "outside_named.py")
sums = load_app(EXAMPLES / "agents" / "sums.py")


async def fill(store: perper.LogStore) -> None:
    """Two sealed streams outside any run, run ``a`` over one by a launcher parameter,
    run ``b`` over the other through a parameter of its execution only, run ``a2`` (a
    name ``a`` is a prefix of) over both."""
    async with perper.Producer(store, "shop/clicks") as clicks:
        await clicks.send_many(
            [{"user": i % 3, "page": "/"} for i in range(12)], keys=[f"k{i}" for i in range(12)]
        )
        await clicks.seal()
    await store.append("shop/numbers", 0, [1, 2, 3])
    await store.seal("shop/numbers")
    await store.append("shop/unread", 0, ["nobody reads this"])
    assert (await Runtime(store, outside).run("a", {"clicks": perper.StreamRef("shop/clicks")})).ok
    assert (await Runtime(store, named).run("b", {"name": "shop/numbers"})).ok
    assert (await Runtime(store, named).run("a2", {"name": "shop/numbers"})).ok


async def test_the_inputs_of_a_run_are_the_streams_outside_it_its_parameters_name() -> None:
    async with open_store("memory://") as store:
        await fill(store)
        assert await run_inputs(store, "a") == ["shop/clicks"]
        assert await run_inputs(store, "b") == ["shop/numbers"]  # doubled-0's parameters only
        assert await run_inputs(store, "nope") == []


async def test_exporting_a_run_copies_its_outside_inputs_with_keys_and_seal_and_no_other_run(
    tmp_path: Path,
) -> None:
    async with open_store("memory://") as src, open_store(f"sqlite:///{tmp_path / 'd.db'}") as dest:
        await fill(src)
        stats = await copy_store(src, dest, run="b")
        names = [info.name for info in await dest.streams()]
        assert names == ["b/doubled-0", "shop/numbers"]
        assert stats.streams == len(names)
        assert [item async for _, item in dest.read("shop/numbers")] == [1, 2, 3]
        assert (await dest.info("shop/numbers")).sealed
        assert [key for key, _ in await dest.meta_scan("runs")] == ["b"]
        assert {key for key, _ in await dest.meta_scan("executions")} == {"b/main", "b/doubled-0"}

        await copy_store(src, dest, run="a")
        assert await dest.lookup_keys("shop/clicks", ["k0", "k11"]) == {"k0": 0, "k11": 11}
        assert not (await dest.info("shop/unread")).head
        # Run a2 starts with 'a' but is another run: not copied with run a.
        assert not [info.name for info in await dest.streams(prefix="a2/")]
        # The flat tables of an export take the same selection.
        tables = await write_flat_tables(dest, tmp_path / "d.db", run="a")
        assert flat_table_name("shop/clicks") in tables
        assert [i.name for i in await selected_streams(dest, run="a")] == [
            "a/counts-0",
            "a/live-1",
            "a/live-1#effects",
            "shop/clicks",
        ]


async def test_a_stream_glob_with_a_run_leaves_the_inputs_it_does_not_match_out(
    tmp_path: Path,
) -> None:
    async with open_store("memory://") as src, open_store("memory://") as dest:
        await fill(src)
        await copy_store(src, dest, run="a", streams="a/*")
        assert "shop/clicks" not in {info.name for info in await dest.streams()}


def test_exporting_a_run_copies_the_agent_instances_it_started(tmp_path: Path) -> None:
    log = tmp_path / "sums.sqlite"

    async def export() -> None:
        async with open_store("memory://") as src, open_store(f"sqlite:///{log}") as dest:
            assert (await Runtime(src, sums).run("s1", {"count": 5})).ok
            assert (await Runtime(src, sums).run("s2", {"count": 3})).ok
            await copy_store(src, dest, run="s1")
            runs = sorted(key for key, _ in await dest.meta_scan("runs"))
            assert runs == ["s1", "s1.generator-0", "s1.processor-2"]
            names = {info.name for info in await dest.streams()}
            assert {"s1.generator-0/numbers-0", "s1.processor-2/running_sum-0"} <= names
            assert not [name for name in names if name.startswith("s2")]

    asyncio.run(export())
    recorded = load_recorded(log, sums)
    assert recorded.reference.items["s1.processor-2/running_sum-0"] == [0, 1, 3, 6, 10]
