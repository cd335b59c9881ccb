"""A recorded run as the simulator's workload (``python -m simulator run --log REC.sqlite``).

The workload is what production recorded: the run's launcher parameters and every
execution's recorded effects (``ctx.now()``, ``ctx.random()``, ``ctx.uuid()``, agent-state
reads and writes, the results of the calls it made), which are preloaded as the
simulated executions' effect streams (with the agent instances' state logs), so each
execution is handed back the values it recorded, exactly as on recovery. The reference
is the **recorded outputs**, the agent instances' included: a seed passes when today's
code, on N workers under faults, writes exactly what production wrote,
effect-dependent streams included. The simulation keeps the recorded run's name, so
execution ids and the stream references inside recorded values stay valid.

Ingest streams (streams of the run no execution wrote: producers appended them) are fed
by simulated producers during the run, each in its recorded batches and order, with
seed-drawn pauses between batches, so every seed interleaves them differently with the
workers. Calls from outside the run (``perper call``, ``perper.call``: call executions
without a parent) are made again by a simulated caller, in the order the log recorded
them, each after a seed-drawn pause; their outcomes are compared like every output.

Streams outside the run that it reads (a ``perper.StreamRef`` launcher parameter such as
``--param clicks=shop/clicks``, passed on to its executions: :func:`perper.store.mirror.
run_inputs`) are inputs too, which ``perper export --run`` copies with the run. They are
fed like ingest streams, with one difference for what production is known to have seen:
the items below the highest position a reader of the stream recorded (the head a
``ctx.read(start="live")`` started at, the end of a ``ctx.query``) were there when it
looked, so they are in the simulated store before the run starts; the rest follow from
simulated producers in their recorded batches. Recorded positions come back from the
effects, as on recovery, so a live read reads exactly the items production's did. They
are not part of the reference (the run did not write them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perper import codec
from perper.app import App, Kind
from perper.errors import ConfigError
from perper.runtime.records import DONE, EFFECTS_SUFFIX, RUNNING, is_internal_stream
from perper.runtime.retention import query_range
from perper.store.base import StreamInfo
from perper.store.mirror import in_run, run_inputs
from perper.store.sqlite import SQLiteStore
from simulator.checkers import Reference, _refs
from simulator.world import ExternalCall, Feed


@dataclass(frozen=True)
class RecordedRun:
    """What a log recorded of one run, renamed into the simulator's run.

    Attributes:
        source: the log file.
        run: the recorded run's name.
        params: its launcher parameters.
        preload: the simulated effect streams to write before the run starts.
        feeds: the ingest streams (written by producers, not by an execution) and the
            streams outside the run that it reads, which simulated producers append
            during the run in their recorded batches.
        calls: the calls made from outside the run (``perper call``), in the order they
            were recorded, which a simulated caller makes again.
        reference: the recorded outputs, to compare every simulated run with.
        inputs: the streams outside the run that it reads, with their recorded lengths.
    """

    source: Path
    run: str
    params: dict[str, Any]
    preload: dict[str, list[Any]] = field(repr=False)
    reference: Reference = field(repr=False)
    feeds: dict[str, Feed] = field(default_factory=dict, repr=False)
    calls: tuple[ExternalCall, ...] = field(default=(), repr=False)
    inputs: dict[str, int] = field(default_factory=dict)

    @property
    def effect_count(self) -> int:
        """The recorded effects (and agent-state log entries) preloaded."""
        return sum(len(items) for name, items in self.preload.items() if is_internal_stream(name))


def _creation_order(path: Path) -> dict[str, int]:
    """Execution id -> the order the log's executions were first written in: SQLite
    keeps a row's rowid when it is updated, so rowid order is creation order (logs that
    ``perper export`` writes keep it too). Empty when the file does not tell."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT key FROM executions ORDER BY rowid").fetchall()
    except sqlite3.Error:
        return {}
    return {str(key): index for index, (key,) in enumerate(rows)}


async def _read(path: Path, app: App, run: str | None) -> RecordedRun:
    store = SQLiteStore(path, read_only=True)
    try:
        runs = {key: meta.value for key, meta in await store.meta_scan("runs")}
        if not runs:
            raise ConfigError(f"--log {path}: the log holds no run (record one with 'perper run')")
        if run is None:
            mine = sorted(k for k, v in runs.items() if v.get("app") == app.name)
            if len(mine) != 1:
                raise ConfigError(
                    f"--log {path} holds {len(mine)} runs of app {app.name!r}"
                    + (f" ({', '.join(mine)})" if mine else f" (it has: {', '.join(sorted(runs))})")
                    + ": choose one with --run NAME"
                )
            run = mine[0]
        if run not in runs:
            raise ConfigError(
                f"--run {run!r}: no such run in {path} (it has: {', '.join(sorted(runs))})"
            )
        record = runs[run]
        if record.get("app") != app.name:
            raise ConfigError(
                f"run {run!r} in {path} is of app {record.get('app')!r}, not {app.name!r}: "
                "give the app that recorded it"
            )
        params = codec.unpack(record["params"])
        reference = Reference(label=f"the recorded run {run!r}")
        preload: dict[str, list[Any]] = {}
        feeds: dict[str, Feed] = {}
        executions = {
            key: meta.value
            for key, meta in await store.meta_scan("executions", prefix=run)
            if in_run(key, run)
        }
        ingest = []
        for info in await store.streams(prefix=run):
            if not in_run(info.name, run):
                continue
            items = [item async for _, item in store.read(info.name)]
            name = info.name
            if is_internal_stream(info.name):
                # Recorded effects (now, random, uuid, agent-state reads, call results)
                # and agent-state logs, as the executions that recorded them left them.
                preload[name] = items
                continue
            if info.name not in executions:  # an ingest stream: producers wrote it
                ingest.append(info)
            reference.heads[name] = info.head
            if info.sealed:
                reference.sealed.add(name)
            reference.items[name] = items
            reference.outputs[name] = [codec.canonical(item) for item in items]
        if ingest:
            # Their readers got their refs from ctx.ingest, which their parameters do not
            # show: every execution of the run counts as one.
            seen = _highest_recorded_position(executions, preload)
            for info in ingest:
                await _feed(store, info, min(seen, info.head), preload, feeds)
        inputs = await _outside_inputs(store, path, run, executions, preload, feeds)
        reference.run_status = record["status"]
        if record["status"] == RUNNING and all(
            value["status"] == DONE for value in executions.values()
        ):
            # Every execution finished: a run a call revived, exported before a worker
            # settled it again. The simulated run settles it: done.
            reference.run_status = DONE
        unfinished = sorted(k for k, v in executions.items() if v["status"] == RUNNING)
        if record["status"] == RUNNING and unfinished:
            open_inputs = sorted(name for name, feed in feeds.items() if not feed.sealed)
            raise ConfigError(
                f"run {run!r} in {path} had not finished when it was recorded ("
                + ", ".join(unfinished[:5])
                + (f" and {len(unfinished) - 5} more" if len(unfinished) > 5 else "")
                + " still running"
                + (f"; never sealed: {', '.join(open_inputs)}" if open_inputs else "")
                + "): the simulator compares with the outputs of a finished run. Let it "
                "finish (seal its inputs: Producer.seal(), 'perper ingest --seal') and export "
                f"it again, or check it as it is with 'perper replay {path.name} APP.py'"
            )
        order = _creation_order(path)
        outside = sorted(
            (key for key, value in executions.items() if _called_from_outside(value)),
            key=lambda key: (order.get(key, len(order)), key),
        )
        calls = tuple(_external_call(executions[key]) for key in outside)
        return RecordedRun(path, run, dict(params), preload, reference, feeds, calls, inputs)
    finally:
        await store.close()


async def _outside_inputs(
    store: SQLiteStore,
    path: Path,
    run: str,
    executions: dict[str, dict[str, Any]],
    preload: dict[str, list[Any]],
    feeds: dict[str, Feed],
) -> dict[str, int]:
    """Add the streams outside ``run`` that it reads to ``preload`` (what a recorded
    position shows production had) and ``feeds`` (the rest); return their lengths.

    Raises:
        ConfigError: the log does not hold one of them.
    """
    inputs: dict[str, int] = {}
    for name in await run_inputs(store, run):
        info = await store.info(name)
        readers = {
            key: value
            for key, value in executions.items()
            if name in _refs(codec.unpack(value["params"]))
        }
        if not info.head and not info.sealed:
            raise ConfigError(
                f"run {run!r} in {path} reads the stream {name!r} from outside the run (the "
                f"parameters of {', '.join(sorted(readers)) or 'its launcher'} name it), which "
                f"the log does not hold: export the run again with 'perper export SRC_URL "
                f"{path.name} --run {run}' (it copies the streams a run reads with the run)"
            )
        seen = _highest_recorded_position(readers, preload)
        await _feed(store, info, min(seen, info.head), preload, feeds)
        inputs[name] = info.head
    return inputs


async def _feed(
    store: SQLiteStore,
    info: StreamInfo,
    seen: int,
    preload: dict[str, list[Any]],
    feeds: dict[str, Feed],
) -> None:
    """The stream ``info`` as the simulator's input: its first ``seen`` items preloaded,
    the rest appended by a simulated producer in the batches the log holds them in."""
    name = info.name
    batches: list[tuple[Any, ...]] = []
    items: list[Any] = []
    async for first, batch in store.read_batches(name):
        if first + len(batch) <= seen:
            items.extend(batch)
        elif first < seen:
            items.extend(batch[: seen - first])
            batches.append(tuple(batch[seen - first :]))
        else:
            batches.append(tuple(batch))
    if items:
        preload[name] = items
    index = await store.index_of(name)
    feeds[name] = Feed(tuple(batches), sealed=info.sealed, first=seen, index=index)


def _highest_recorded_position(
    readers: dict[str, dict[str, Any]], preload: dict[str, list[Any]]
) -> int:
    """The highest position that one of ``readers`` (executions) recorded as an effect,
    a live read's start or a query's end: production's stream held at least that many
    items when it looked, so the simulated one must too when the recorded read runs
    again. Effects of their reads of other streams count too, which only preloads more
    of the stream (never less than a recorded read needs)."""
    highest = 0
    for key in readers:
        for effect in preload.get(key + EFFECTS_SUFFIX, ()):
            match effect:
                case ["live", int(start)]:
                    highest = max(highest, start)
                case ["query", recorded]:
                    highest = max(highest, query_range(recorded)[1])
    return highest


CALL = str(Kind.CALL)


def _called_from_outside(value: dict[str, Any]) -> bool:
    return value.get("kind") == CALL and value.get("parent") is None


def _external_call(value: dict[str, Any]) -> ExternalCall:
    arguments = codec.unpack(value["params"])
    return ExternalCall(
        run=value["run"],
        function=value["function"],
        args=tuple(arguments.get("args", ())),
        kwargs=dict(arguments.get("kwargs", {})),
        key=value["id"].rpartition("@")[2],
    )


def load_recorded(path: str | os.PathLike[str], app: App, *, run: str | None = None) -> RecordedRun:
    """Read the run ``run`` (the only run of ``app`` when None) from a SQLite log, as
    ``perper run --store sqlite:///...`` or ``perper export`` writes it.

    Raises:
        ConfigError: no such file or run, another app's run, a run that had not finished
            (executions still running), or a run that reads a stream from outside it
            that the log does not hold.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(
            f"--log {source}: no such file (give a SQLite log, e.g. from 'perper export')"
        )
    return asyncio.run(_read(source, app, run))
