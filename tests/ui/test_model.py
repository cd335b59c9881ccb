"""perper.ui.model over a MemoryStore and over synthetic records: what the pages show."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import perper
import perper.ui
from perper import codec
from perper.app import load_app
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.store.memory import MemoryStore
from perper.ui import model
from tests.ui.conftest import off_loop
from tests.ui.stores import KNOWN_RUNS

T = TypeVar("T")


def on_memory(body: Callable[[MemoryStore], Awaitable[T]], *, known_runs: bool = True) -> T:
    """Run ``body`` over a MemoryStore (with the known runs recorded into it)."""

    async def main() -> T:
        store = MemoryStore()
        if known_runs:
            for run, app_file, params in KNOWN_RUNS:
                runtime = perper.Runtime(
                    store, load_app(app_file), clock=lambda: 0.0, entropy=random.Random(1)
                )
                await runtime.run(run, params)
        try:
            return await body(store)
        finally:
            await store.close()

    return off_loop(asyncio.run, main())


def test_list_runs_counts_executions_items_and_failures():
    runs = {run.name: run for run in on_memory(model.list_runs)}
    assert set(runs) == {"basic-small", "cycle-10", "broken"}
    assert (runs["basic-small"].executions, runs["basic-small"].items) == (4, 27)
    assert (runs["broken"].status, runs["broken"].failures) == ("failed", 1)
    assert runs["cycle-10"].failures == 0
    assert next(iter(on_memory(model.list_runs))).name == "broken"  # failed before done


def test_the_runs_page_lists_the_newest_run_first_by_its_recorded_start():
    async def main() -> list[model.RunSummary]:
        store = MemoryStore()
        app = load_app(KNOWN_RUNS[0][1])
        for started, run in [(100.0, "old"), (300.0, "newest"), (200.0, "middle")]:
            runtime = perper.Runtime(
                store, app, clock=lambda t=started: t, entropy=random.Random(1)
            )
            await runtime.run(run, KNOWN_RUNS[0][2])
        await store.meta_cas(  # a record written before runs kept their start: last
            "runs", "legacy", {**(await store.meta_get("runs", "old")).value, "name": "legacy",
                               "started": None}, version=0
        )  # fmt: skip
        try:
            return await model.list_runs(store)
        finally:
            await store.close()

    runs = off_loop(asyncio.run, main())
    assert [run.name for run in runs] == ["newest", "middle", "old", "legacy"]
    assert runs[0].started_at == "1970-01-01 00:05:00 UTC"


def test_the_cycle_graph_has_edges_both_ways_between_ping_and_pong():
    graph = on_memory(lambda store: model.run_graph(store, "cycle-10"))
    assert graph is not None
    reads = {(e.source, e.target) for e in graph.edges if e.kind == "read"}
    assert ("cycle-10/ping-0", "cycle-10/pong-1") in reads
    assert ("cycle-10/pong-1", "cycle-10/ping-0") in reads
    assert len(graph.nodes) == 4


def test_an_unknown_run_has_no_graph():
    assert on_memory(lambda store: model.run_graph(store, "nope")) is None


def test_a_failed_execution_view_carries_its_traceback():
    view = on_memory(lambda store: model.execution_view(store, "broken/checker-1"))
    assert view is not None
    assert view.record.status == "failed"
    assert view.record.error is not None
    assert "ValueError: checker cannot take n=3" in view.record.error
    assert view.inputs == ("broken/numbers-0",)


def test_a_stream_page_is_cut_at_the_limit_and_knows_its_neighbours():
    page = on_memory(
        lambda store: model.stream_page(store, "basic-small/generator-0", start=5, limit=5)
    )
    assert [seq for seq, _ in page.items] == [5, 6, 7, 8, 9]
    assert (page.previous_start, page.next_start) == (0, 10)
    assert page.writer is not None and page.writer.function == "generator"


async def _lagging(store: MemoryStore) -> Any:
    """A running reader checkpointed at 4 of a 10-item stream no execution writes."""
    await store.append("r/clicks", 0, [{"n": i} for i in range(10)])
    run = RunRecord("r", "demo", "main", codec.pack({}))
    await store.meta_put("runs", "r", run.to_meta())
    params = codec.pack({"source": perper.StreamRef("r/clicks")})
    reader = ExecutionRecord("r/reader-0", "r", "reader", "stream", params, parent="r/main")
    await store.meta_put("executions", reader.id, reader.to_meta())
    checkpoint = {"positions": [["r/clicks", 4]], "out": 0, "state": {}, "effects": 0}
    await store.meta_put("checkpoints", reader.id, checkpoint)
    return await model.run_graph(store, "r")


def test_reader_lag_is_the_head_minus_the_checkpointed_position():
    graph = on_memory(_lagging, known_runs=False)
    assert graph is not None
    (edge,) = [e for e in graph.edges if e.kind == "read"]
    assert (edge.source, edge.target, edge.items, edge.lag) == ("r/clicks", "r/reader-0", 10, 6)
    ingest = next(node for node in graph.nodes if node.id == "r/clicks")
    assert ingest.kind == "ingest"
    assert ingest.items == 10


def test_is_loopback_accepts_only_this_machine():
    assert perper.ui.is_loopback("127.0.0.1")
    assert perper.ui.is_loopback("::1")
    assert perper.ui.is_loopback("localhost")
    assert not perper.ui.is_loopback("0.0.0.0")
    assert not perper.ui.is_loopback("192.168.1.4")


async def _with_agent_and_call(store: MemoryStore) -> Any:
    """Run r's launcher made a call and started agent instance r.box-1 (its own run)."""
    nothing = codec.pack({})
    for name, app in (("r", "usage"), ("r.box-1", "container")):
        await store.meta_put("runs", name, RunRecord(name, app, "main", nothing).to_meta())
    records = [
        ExecutionRecord("r/main", "r", "main", "launcher", nothing),
        ExecutionRecord("r/main/lucky-0", "r", "lucky", "call", nothing, parent="r/main"),
        ExecutionRecord("r.box-1/main", "r.box-1", "main", "launcher", nothing, parent="r/main"),
    ]
    for record in records:
        await store.meta_put("executions", record.id, record.to_meta())
    return await model.run_graph(store, "r")


def test_calls_and_agent_instances_are_drawn_from_their_caller():
    graph = on_memory(_with_agent_and_call, known_runs=False)
    assert graph is not None
    kinds = {node.id: node.kind for node in graph.nodes}
    assert kinds == {"r/main": "launcher", "r/main/lucky-0": "call", "r.box-1": "agent"}
    edges = {(e.source, e.target, e.kind) for e in graph.edges}
    assert ("r/main", "r/main/lucky-0", "call") in edges
    assert ("r/main", "r.box-1", "agent") in edges
    agent = next(node for node in graph.nodes if node.kind == "agent")
    assert agent.function == "container"


async def _called_five_times(store: MemoryStore) -> Any:
    """Agent instance r.box-1 answered five calls of 'lucky' from r/main (another run)."""
    nothing = codec.pack({})
    await store.meta_put("runs", "r.box-1", RunRecord("r.box-1", "box", "main", nothing).to_meta())
    launcher = ExecutionRecord("r.box-1/main", "r.box-1", "main", "launcher", nothing)
    await store.meta_put("executions", launcher.id, launcher.to_meta())
    for i in range(5):
        call = ExecutionRecord(
            f"r.box-1/lucky-{i}", "r.box-1", "lucky", "call", nothing, parent="r/main"
        ).with_status("failed" if i == 3 else "done")
        await store.meta_put("executions", call.id, call.to_meta())
    return await model.run_graph(store, "r.box-1")


def test_many_calls_from_one_caller_are_drawn_as_one_box():
    graph = on_memory(_called_five_times, known_runs=False)
    assert graph is not None
    nodes = {node.kind: node for node in graph.nodes}
    assert sorted(nodes) == ["caller", "calls", "launcher"]
    assert nodes["calls"].function == "lucky \u00d75"
    assert nodes["calls"].status == "failed"  # one of them failed
    assert nodes["caller"].id == "r/main"
    assert [(e.source, e.target, e.kind) for e in graph.edges] == [
        ("r/main", nodes["calls"].id, "call")
    ]
