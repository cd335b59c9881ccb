"""A recorded run as the simulator's workload (``python -m simulator run --log REC.sqlite``).

The workload is what production recorded: the run's launcher parameters and every
execution's recorded effects (``ctx.now()``, ``ctx.random()``, ``ctx.uuid()``), which are
preloaded as the simulated executions' effect streams, so each execution is handed back
the values it recorded, exactly as on recovery. The reference is the **recorded
outputs**: a seed passes when today's code, on N workers under faults, writes exactly
what production wrote, effect-dependent streams included.

Ingest streams (streams of the run no execution wrote: producers appended them) are fed
by simulated producers during the run, each in its recorded batches and order, with
seed-drawn pauses between batches, so every seed interleaves them differently with the
workers. A launcher parameter that is a StreamRef to a stream outside the run is refused.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perper import codec
from perper.app import App
from perper.errors import ConfigError
from perper.runtime.records import EFFECTS_SUFFIX, is_internal_stream
from perper.store.sqlite import SQLiteStore
from simulator.checkers import Reference, _refs
from simulator.world import RUN, Feed


@dataclass(frozen=True)
class RecordedRun:
    """What a log recorded of one run, renamed into the simulator's run.

    Attributes:
        source: the log file.
        run: the recorded run's name.
        params: its launcher parameters.
        preload: the simulated effect streams to write before the run starts.
        feeds: the ingest streams (written by producers, not by an execution), which
            simulated producers append during the run in their recorded batches.
        reference: the recorded outputs, to compare every simulated run with.
    """

    source: Path
    run: str
    params: dict[str, Any]
    preload: dict[str, list[Any]] = field(repr=False)
    reference: Reference = field(repr=False)
    feeds: dict[str, Feed] = field(default_factory=dict, repr=False)


def _simulated(name: str, run: str) -> str:
    return RUN + name[len(run) :]


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
        if _refs(params):
            raise ConfigError(
                f"run {run!r} in {path} reads ingest streams ({', '.join(_refs(params))}): "
                "replaying ingest streams is not supported yet; record a run whose launcher "
                "takes plain parameters"
            )
        reference = Reference(label=f"the recorded run {run!r}")
        preload: dict[str, list[Any]] = {}
        feeds: dict[str, Feed] = {}
        executions = {key for key, _ in await store.meta_scan("executions", prefix=run + "/")}
        for info in await store.streams(prefix=run + "/"):
            items = [item async for _, item in store.read(info.name)]
            name = _simulated(info.name, run)
            if info.name.endswith(EFFECTS_SUFFIX):
                preload[name] = items
                continue
            if is_internal_stream(info.name):
                continue
            if info.name not in executions:  # an ingest stream: producers wrote it
                batches = tuple([tuple(batch) async for _, batch in store.read_batches(info.name)])
                feeds[name] = Feed(batches, sealed=info.sealed)
            reference.heads[name] = info.head
            if info.sealed:
                reference.sealed.add(name)
            reference.items[name] = items
            reference.outputs[name] = [codec.canonical(item) for item in items]
        reference.run_status = record["status"]
        return RecordedRun(path, run, dict(params), preload, reference, feeds)
    finally:
        await store.close()


def load_recorded(path: str | os.PathLike[str], app: App, *, run: str | None = None) -> RecordedRun:
    """Read the run ``run`` (the only run of ``app`` when None) from a SQLite log, as
    ``perper run --store sqlite:///...`` or ``perper export`` writes it.

    Raises:
        ConfigError: no such file or run, another app's run, or a run over ingest streams.
    """
    source = Path(path)
    if not source.is_file():
        raise ConfigError(
            f"--log {source}: no such file (give a SQLite log, e.g. from 'perper export')"
        )
    return asyncio.run(_read(source, app, run))
