"""What the web UI shows, read from a store through its public API only.

Every function here takes a :class:`~perper.store.base.LogStore` and returns plain
dataclasses (or JSON-ready dicts); none writes. The pages (``perper.ui.server``) render
them, the graph page also fetches :func:`run_graph` as JSON to redraw it live.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from perper import codec
from perper.errors import FormatError
from perper.runtime.listing import start_order
from perper.runtime.records import (
    DONE,
    EFFECTS_SUFFIX,
    FAILED,
    RUNNING,
    ExecutionRecord,
    RunRecord,
    is_internal_stream,
)
from perper.store.base import LogStore
from perper.streamref import StreamRef

#: Items a stream page shows at once, unless asked for another number.
PAGE_SIZE = 50
#: The most items one stream page shows, whatever is asked.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One row of the runs page."""

    name: str
    app: str
    status: str
    executions: int
    items: int
    failures: int
    started: float | None = None
    #: ``started`` as UTC text ("" when the record has no start time).
    started_at: str = ""


@dataclass(frozen=True, slots=True)
class GraphNode:
    """An execution; or, with ``kind`` ``ingest``, a stream no execution writes; or, with
    ``kind`` ``agent``, an agent instance (a run of its own) this run started."""

    id: str
    function: str
    kind: str
    status: str
    items: int
    sealed: bool


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """A stream read (``kind`` ``read``: ``source``'s output read by ``target``), a start
    (``start``: ``source`` started ``target``), a call (``call``: ``source`` called the
    call execution ``target``) or an agent (``agent``: ``source`` started the agent
    instance, another run, ``target``).

    ``lag`` is how many items the reader is behind the head as of its last checkpoint
    (None before its first checkpoint; 0 once the reader is done).
    """

    source: str
    target: str
    stream: str
    items: int
    lag: int | None
    kind: str = "read"


@dataclass(frozen=True, slots=True)
class RunGraph:
    """A run's executions and the streams between them."""

    run: str
    status: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "status": self.status,
            "nodes": [asdict(node) for node in self.nodes],
            "edges": [asdict(edge) for edge in self.edges],
        }


@dataclass(frozen=True, slots=True)
class ExecutionView:
    """Everything the execution page shows."""

    record: ExecutionRecord
    params: str
    items: int
    sealed: bool
    inputs: tuple[str, ...]
    checkpoint: str | None
    lease_owner: str | None
    lease_epoch: int | None
    effects: tuple[tuple[int, str, str], ...]
    children: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class StreamPage:
    """A page of a stream's items, as pretty JSON."""

    name: str
    head: int
    sealed: bool
    writer: ExecutionRecord | None
    start: int
    limit: int
    items: tuple[tuple[int, str], ...]

    @property
    def previous_start(self) -> int | None:
        return max(0, self.start - self.limit) if self.start > 0 else None

    @property
    def next_start(self) -> int | None:
        following = self.start + self.limit
        return following if following < self.head else None


#: A value whose JSON fits in this many characters is shown on one line.
ONE_LINE = 100


def pretty(value: Any) -> str:
    """A decoded value as JSON (bytes, stream refs and dataclasses made plain): on one
    line if short, else indented."""
    plain = codec.to_jsonable(value)
    line = json.dumps(plain, ensure_ascii=False)
    return line if len(line) <= ONE_LINE else json.dumps(plain, indent=2, ensure_ascii=False)


def stream_refs(value: Any) -> list[str]:
    """The names of the streams referred to anywhere inside ``value``, in order."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, StreamRef):
            if node.stream not in found:
                found.append(node.stream)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(value)
    return found


def _positions(checkpoint: Any) -> dict[str, int]:
    """Input stream -> items consumed, from a checkpoint's ``positions`` (entries start
    with ``[stream, position, ...]``; a stream read twice counts its furthest read)."""
    found: dict[str, int] = {}
    entries = checkpoint.get("positions", []) if isinstance(checkpoint, dict) else []
    for entry in entries:
        if isinstance(entry, (list, tuple)) and len(entry) >= 2:
            stream, position = str(entry[0]), int(entry[1])
            found[stream] = max(position, found.get(stream, 0))
    return found


def _decode_params(record: ExecutionRecord) -> Any:
    try:
        return codec.unpack(record.params)
    except FormatError:
        return {"__undecodable__": record.params.hex()}


def _run_status(record: RunRecord, executions: list[ExecutionRecord]) -> str:
    if any(e.status == FAILED for e in executions):
        return FAILED
    return record.status


async def _executions(store: LogStore, run: str) -> list[ExecutionRecord]:
    records = [
        record
        for _, meta in await store.meta_scan("executions", prefix=f"{run}/")
        if (record := ExecutionRecord.from_meta(meta.value)).run == run
    ]
    return sorted(records, key=lambda record: start_order(record.id))


async def list_runs(store: LogStore) -> list[RunSummary]:
    """Every run, newest first (by the start time in its record); runs recorded before
    perper kept one come last: running, then failed, then done, by name."""
    runs = [RunRecord.from_meta(meta.value) for _, meta in await store.meta_scan("runs")]
    heads = {
        info.name: info.head for info in await store.streams() if not is_internal_stream(info.name)
    }
    by_run: dict[str, list[ExecutionRecord]] = {}
    for _, meta in await store.meta_scan("executions"):
        record = ExecutionRecord.from_meta(meta.value)
        by_run.setdefault(record.run, []).append(record)
    summaries = []
    for run in runs:
        executions = by_run.get(run.name, [])
        items = sum(count for name, count in heads.items() if name.startswith(f"{run.name}/"))
        summaries.append(
            RunSummary(
                name=run.name,
                app=run.app,
                status=_run_status(run, executions),
                executions=len(executions),
                items=items,
                failures=sum(1 for e in executions if e.status == FAILED),
                started=run.started,
                started_at=""
                if run.started is None
                else datetime.fromtimestamp(run.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            )
        )
    rank: dict[str, int] = {RUNNING: 0, FAILED: 1, DONE: 2}
    return sorted(
        summaries,
        key=lambda s: (s.started is None, -(s.started or 0.0), rank.get(s.status, 3), s.name),
    )


async def run_graph(store: LogStore, run: str) -> RunGraph | None:
    """The graph of ``run`` (None if the store has no such run): a node per execution,
    an edge per stream an execution reads, with the stream's length and the reader's lag."""
    entry = await store.meta_get("runs", run)
    if entry is None:
        return None
    record = RunRecord.from_meta(entry.value)
    executions = await _executions(store, run)
    infos = {info.name: info for info in await store.streams(prefix=f"{run}/")}
    ids = {e.id for e in executions}
    nodes = [
        GraphNode(
            id=e.id,
            function=e.function,
            kind=e.kind,
            status=e.status,
            items=infos[e.id].head if e.id in infos else 0,
            sealed=infos[e.id].sealed if e.id in infos else False,
        )
        for e in executions
    ]
    edges: list[GraphEdge] = []
    extra: dict[str, GraphNode] = {}
    for e in executions:
        if e.parent in ids:
            # A call is drawn from its caller; who started a stream is on the pages.
            kind = "call" if e.kind == "call" else "start"
            edges.append(GraphEdge(e.parent, e.id, "", 0, None, kind=kind))
        positions: dict[str, int] = {}
        checkpoint = await store.meta_get("checkpoints", e.id)
        if checkpoint is not None:
            positions = _positions(checkpoint.value)
        # Streams passed as parameters, and any other the checkpoint says it reads
        # (an ingest stream opened inside the function).
        inputs = stream_refs(_decode_params(e))
        inputs += [s for s in positions if s not in inputs and not is_internal_stream(s)]
        for stream in inputs:
            info = infos.get(stream) or await store.info(stream)
            if stream not in ids and stream not in extra:
                extra[stream] = GraphNode(
                    id=stream,
                    function=stream.rsplit("/", 1)[-1],
                    kind="ingest",
                    status="sealed" if info.sealed else "open",
                    items=info.head,
                    sealed=info.sealed,
                )
            if e.status == DONE:
                lag: int | None = 0
            elif stream in positions:
                lag = max(0, info.head - positions[stream])
            else:
                lag = None
            edges.append(GraphEdge(stream, e.id, stream, info.head, lag))
    agents = await _child_agents(store, run, ids)
    edges.extend(GraphEdge(parent, node.id, "", 0, None, kind="agent") for parent, node in agents)
    # Calls from outside the run (into this agent instance): the caller as a node.
    for e in executions:
        if e.kind == "call" and e.parent is not None and e.parent not in ids:
            if e.parent not in extra:
                extra[e.parent] = GraphNode(
                    id=e.parent,
                    function=e.parent.rsplit("/", 1)[-1],
                    kind="caller",
                    status="caller",
                    items=0,
                    sealed=False,
                )
            edges.append(GraphEdge(e.parent, e.id, "", 0, None, kind="call"))
    all_nodes, all_edges = _group_calls(
        [*nodes, *extra.values(), *(node for _, node in agents)], edges, executions
    )
    return RunGraph(
        run=run,
        status=_run_status(record, executions),
        nodes=tuple(all_nodes),
        edges=tuple(all_edges),
    )


#: Calls of one function by one caller beyond this many are drawn as one box.
CALL_GROUP = 3


def _group_calls(
    nodes: list[GraphNode], edges: list[GraphEdge], executions: list[ExecutionRecord]
) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Draw the calls of one function by one caller as one box ``function x N`` once
    there are more than CALL_GROUP of them (the executions table still lists each)."""
    groups: dict[tuple[str, str], list[ExecutionRecord]] = {}
    for e in executions:
        if e.kind == "call" and e.parent is not None:
            groups.setdefault((e.parent, e.function), []).append(e)
    into: dict[str, GraphNode] = {}
    for (parent, function), calls in groups.items():
        if len(calls) <= CALL_GROUP:
            continue
        statuses = {call.status for call in calls}
        status = next((s for s in (FAILED, RUNNING) if s in statuses), DONE)
        group = GraphNode(
            id=f"{parent} calls {function}",
            function=f"{function} \u00d7{len(calls)}",
            kind="calls",
            status=str(status),
            items=len(calls),
            sealed=False,
        )
        for call in calls:
            into[call.id] = group
    if not into:
        return nodes, edges
    kept = [node for node in nodes if node.id not in into]
    kept.extend({node.id: node for node in into.values()}.values())
    seen: set[tuple[str, str, str]] = set()
    regrouped = []
    for edge in edges:
        source = into[edge.source].id if edge.source in into else edge.source
        target = into[edge.target].id if edge.target in into else edge.target
        if (source, target, edge.kind) in seen and edge.kind != "read":
            continue
        seen.add((source, target, edge.kind))
        regrouped.append(replace(edge, source=source, target=target))
    return kept, regrouped


async def _child_agents(store: LogStore, run: str, ids: set[str]) -> list[tuple[str, GraphNode]]:
    """Agent instances started from ``run``: other runs whose launcher's parent is one of
    ``ids``, each as (starting execution, node of kind ``agent`` named after the run)."""
    found = []
    for _, meta in await store.meta_scan("executions"):
        child = ExecutionRecord.from_meta(meta.value)
        if child.run == run or child.parent not in ids or child.kind != "launcher":
            continue
        entry = await store.meta_get("runs", child.run)
        instance = RunRecord.from_meta(entry.value) if entry else None
        status = instance.status if instance else child.status
        node = GraphNode(
            id=child.run,
            function=instance.app if instance else child.function,
            kind="agent",
            status=str(status),
            items=0,
            sealed=False,
        )
        found.append((str(child.parent), node))
    return found


async def execution_view(store: LogStore, execution: str) -> ExecutionView | None:
    """What the execution page shows (None if the store has no such execution)."""
    entry = await store.meta_get("executions", execution)
    if entry is None:
        return None
    record = ExecutionRecord.from_meta(entry.value)
    params = _decode_params(record)
    info = await store.info(execution)
    checkpoint = await store.meta_get("checkpoints", execution)
    lease = await store.meta_get("leases", execution)
    effects = tuple(
        [
            (
                seq,
                str(effect[0]) if isinstance(effect, list) and effect else "?",
                pretty(effect[1:]),
            )
            async for seq, effect in store.read(execution + EFFECTS_SUFFIX)
        ]
    )
    children = tuple(
        key
        for key, _ in await store.meta_scan("executions", prefix=f"{execution}/")
        if key.count("/") == execution.count("/") + 1
    )
    if record.kind == "launcher":
        children = tuple(
            key
            for key, _ in await store.meta_scan("executions", prefix=f"{record.run}/")
            if key != execution and key.count("/") == 1
        )
    return ExecutionView(
        record=record,
        params=pretty(params),
        items=info.head,
        sealed=info.sealed,
        inputs=tuple(stream_refs(params)),
        checkpoint=pretty(checkpoint.value) if checkpoint else None,
        lease_owner=lease.value.get("owner") if lease else None,
        lease_epoch=lease.value.get("epoch") if lease else None,
        effects=effects,
        children=tuple(sorted(children, key=start_order)),
    )


async def stream_page(
    store: LogStore, stream: str, *, start: int = 0, limit: int = PAGE_SIZE
) -> StreamPage:
    """Items ``start`` to ``start + limit`` of ``stream`` (limit capped at 1,000)."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    # A trimmed (ephemeral) stream pages from its first stored seq, which the page shows.
    start = max(0, start, await store.first_seq(stream))
    info = await store.info(stream)
    writer_entry = await store.meta_get("executions", stream)
    writer = ExecutionRecord.from_meta(writer_entry.value) if writer_entry else None
    items = tuple(
        [(seq, pretty(item)) async for seq, item in store.read(stream, start, start + limit)]
    )
    return StreamPage(
        name=stream,
        head=info.head,
        sealed=info.sealed,
        writer=writer,
        start=start,
        limit=limit,
        items=items,
    )
