"""Whole-run replay: re-run a run from its recorded ingest streams and launcher
parameters, in a fresh in-memory store, and compare every stream with the recording.

Where per-execution replay feeds each function its *recorded* inputs, this runs the
real :class:`~perper.runtime.Runtime`, so each function reads what today's code of its
upstream functions writes: a change shows up in every stream downstream of it.
Streams the run reads but no execution writes (ingest streams, and the streams outside
the run that it reads, :func:`perper.store.mirror.run_inputs`) and the
recorded effects are copied in first; everything else is recomputed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from typing import Any

from perper import codec
from perper.app import App
from perper.diff import structural_diff
from perper.errors import ConfigError, ReplayError
from perper.replay.clock import DEFAULT_FROZEN_TIME, FrozenClock
from perper.replay.engine import as_app, recorded_executions, recorded_runs, resolve_record
from perper.replay.log import open_log
from perper.replay.results import (
    DIVERGED,
    EXTRA_STREAM,
    IDENTICAL,
    ITEM,
    LONGER,
    MISSING_STREAM,
    SHORTER,
    UNREPLAYABLE,
    Divergence,
    GraphReplayResults,
    RunFailure,
    RunReplayResult,
    StreamResult,
)
from perper.runtime import Runtime
from perper.runtime.listing import start_order
from perper.runtime.records import (
    EFFECTS_SUFFIX,
    FAILED,
    RUNNING,
    ExecutionRecord,
    RunRecord,
    is_internal_stream,
)
from perper.store.base import LogStore
from perper.store.memory import MemoryStore
from perper.store.mirror import run_inputs

#: Seconds between checks that the replayed run still makes progress.
_IDLE_CHECK = 0.05


class _OverlayStore(MemoryStore):
    """A MemoryStore that knows which executions are blocked waiting for input, and
    whether anything was written since it was last asked, to tell a run that can make
    no more progress (its inputs end unfinished in the recording) from a busy one."""

    def __init__(self) -> None:
        super().__init__("memory://replay")
        self.blocked: dict[str, int] = {}
        self.writes = 0

    async def wait(self, stream: str, seq: int, timeout: float | None = None) -> bool:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else ""
        self.blocked[name] = self.blocked.get(name, 0) + 1
        try:
            return await super().wait(stream, seq, timeout=timeout)
        finally:
            self.blocked[name] -= 1

    async def append(self, stream: str, seq: int, items: Any, **options: Any) -> int:
        self.writes += 1
        return await super().append(stream, seq, items, **options)

    async def seal(self, stream: str, **options: Any) -> None:
        self.writes += 1
        await super().seal(stream, **options)


def replay_graph(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    run: str | None = None,
    freeze_clock: bool = True,
) -> GraphReplayResults:
    """Re-run the runs of ``log`` (or only ``run``) with today's ``app`` and compare
    every stream with the recording.

    Raises:
        ReplayError: the log cannot be opened or has no (such) run; or this is called
            inside a running event loop (use :func:`replay_graph_async`).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ReplayError(
            "perper.replay.replay_graph() was called inside a running event loop; "
            "use 'await perper.replay.replay_graph_async(...)' there"
        )
    return asyncio.run(replay_graph_async(log, app, run=run, freeze_clock=freeze_clock))


async def replay_graph_async(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    run: str | None = None,
    freeze_clock: bool = True,
) -> GraphReplayResults:
    """:func:`replay_graph`, for callers already in an event loop."""
    application = as_app(app)
    store, owned = open_log(log)
    try:
        runs = await recorded_runs(store)
        if run is not None:
            runs = [r for r in runs if r.name == run]
        if not runs:
            raise ReplayError(
                f"{store.url} has no run"
                + (f" named {run!r}" if run else "s")
                + " to replay: a whole-run replay needs the run's record (perper export "
                "copies it)"
            )
        records = await recorded_executions(store)
        notes: list[str] = []
        results = []
        with FrozenClock(freeze_clock) as clock:
            if freeze_clock and not clock.available:
                notes.append(
                    "freezegun is not installed: direct time.time() and "
                    "datetime.now() calls see the real clock"
                )
            for record in runs:
                ofrun = {k: r for k, r in records.items() if r.run == record.name}
                results.append(await _replay_run(store, application, record, ofrun, clock))
        return GraphReplayResults(store.url, application.name, tuple(results), tuple(notes))
    finally:
        if owned:
            await store.close()


def _unreplayable_reason(
    app: App, run: RunRecord, records: dict[str, ExecutionRecord]
) -> str | None:
    if app.launcher_name != run.launcher:
        return (
            f"run {run.name!r} was launched by {run.launcher!r}; the app's launcher is "
            f"{app.launcher_name!r}"
        )
    for record in sorted(records.values(), key=lambda r: start_order(r.id)):
        resolved = resolve_record(app, record)
        if isinstance(resolved, str):
            return resolved
    return None


async def _replay_run(
    log: LogStore,
    app: App,
    run: RunRecord,
    records: dict[str, ExecutionRecord],
    clock: FrozenClock,
) -> RunReplayResult:
    reason = _unreplayable_reason(app, run, records)
    if reason is not None:
        return RunReplayResult(run.name, UNREPLAYABLE, reason=reason)
    overlay = _OverlayStore()
    first_now = None
    recorded_streams = {info.name: info for info in await log.streams(prefix=run.name + "/")}
    for name, info in recorded_streams.items():
        ingest = not is_internal_stream(name) and name not in records
        if not (ingest or name.endswith(EFFECTS_SUFFIX)):
            continue
        async for first, items in log.read_batches(name):
            await overlay.append(name, first, items)
            if name.endswith(EFFECTS_SUFFIX):
                for kind, value in items:
                    if kind == "now" and (first_now is None or value < first_now):
                        first_now = float(value)
        if info.sealed:
            await overlay.seal(name)
    for name in await run_inputs(log, run.name):
        async for first, items in log.read_batches(name):
            await overlay.append(name, first, items)
        if (await log.info(name)).sealed:
            await overlay.seal(name)
    clock.move_to(first_now if first_now is not None else DEFAULT_FROZEN_TIME)

    runtime = Runtime(overlay, app, clock=lambda: DEFAULT_FROZEN_TIME, entropy=random.Random(0))
    task = asyncio.ensure_future(runtime.run(run.name, codec.unpack(run.params)))
    notes: list[str] = []
    stuck = await _until_done_or_stuck(task, overlay, run.name)
    failures: list[RunFailure] = []
    if stuck:
        notes.append(
            f"the replayed run stopped making progress: {', '.join(stuck)} wait for input "
            "the recording does not finish; the streams are compared as far as they got"
        )
    else:
        try:
            result = task.result()
        except ConfigError as error:
            return RunReplayResult(run.name, UNREPLAYABLE, reason=str(error))
        for failure in result.failures:
            recorded = records.get(failure.execution)
            if recorded is not None and recorded.status == FAILED:
                notes.append(f"{failure.execution} failed, as in the recording")
            else:
                failures.append(RunFailure(failure.execution, failure.function, failure.error))

    replayed = await recorded_executions(overlay)
    streams: list[StreamResult] = []
    names = set(recorded_streams) | {i.name for i in await overlay.streams(prefix=run.name + "/")}
    names |= set(records) | set(replayed)
    for name in sorted(names, key=start_order):
        record = records.get(name) or replayed.get(name)
        if record is not None and record.kind == "launcher":
            continue  # launchers write no stream; their starts show up as streams
        streams.append(await _compare_stream(log, overlay, name, records, replayed))
    diverged = bool(failures) or any(not s.ok for s in streams)
    return RunReplayResult(
        run.name,
        DIVERGED if diverged else IDENTICAL,
        tuple(streams),
        tuple(failures),
        notes=tuple(notes),
    )


async def _until_done_or_stuck(
    task: asyncio.Future[Any], overlay: _OverlayStore, run: str
) -> list[str]:
    """Wait for the run; if every running execution waits for input and nothing is
    written for two checks in a row, cancel it and return those executions."""
    idle = 0
    writes = -1
    while not task.done():
        await asyncio.wait([task], timeout=_IDLE_CHECK)
        if task.done():
            break
        running = {
            key
            for key, meta in await overlay.meta_scan("executions", prefix=run + "/")
            if meta.value["status"] == RUNNING
        }
        blocked = {name for name, count in overlay.blocked.items() if count > 0}
        if running and running <= blocked and overlay.writes == writes:
            idle += 1
        else:
            idle = 0
        writes = overlay.writes
        if idle >= 2:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return sorted(running, key=start_order)
    return []


async def _compare_stream(
    log: LogStore,
    overlay: LogStore,
    name: str,
    records: dict[str, ExecutionRecord],
    replayed: dict[str, ExecutionRecord],
) -> StreamResult:
    if name.endswith(EFFECTS_SUFFIX):
        owner = records.get(name[: -len(EFFECTS_SUFFIX)])
        function = "#effects"
    else:
        owner = records.get(name)
        function = owner.function if owner else ""
    recorded_head = (await log.info(name)).head
    replayed_head = (await overlay.info(name)).head
    if name not in replayed and name in records:
        return StreamResult(
            name,
            function,
            DIVERGED,
            0,
            recorded_head,
            replayed_head,
            Divergence(
                MISSING_STREAM,
                name,
                function,
                0,
                None,
                None,
                message=f"the replayed run never started {name!r} ({function})",
            ),
        )
    if name in replayed and name not in records and not name.endswith(EFFECTS_SUFFIX):
        started = replayed[name]
        return StreamResult(
            name,
            started.function,
            DIVERGED,
            0,
            recorded_head,
            replayed_head,
            Divergence(
                EXTRA_STREAM,
                name,
                started.function,
                0,
                None,
                {"function": started.function, "params": codec.unpack(started.params)},
                message=f"the replayed run started {name!r} ({started.function}), which "
                "the recording does not have",
            ),
        )
    # An unfinished recorded execution had not written all its output yet.
    allow_longer = owner is not None and owner.status == RUNNING
    expected_items = (item async for _, item in log.read(name))
    actual_items = (item async for _, item in overlay.read(name))
    seq = 0
    while True:
        expected = await anext(expected_items, _END)
        actual = await anext(actual_items, _END)
        if expected is _END and actual is _END:
            break
        if expected is _END:
            if allow_longer:
                break
            divergence = Divergence(
                LONGER,
                name,
                function,
                seq,
                None,
                actual,
                message=f"the replayed run wrote {replayed_head} items to {name!r}; the "
                f"recording has {recorded_head}",
            )
            return StreamResult(
                name, function, DIVERGED, seq, recorded_head, replayed_head, divergence
            )
        if actual is _END:
            divergence = Divergence(
                SHORTER,
                name,
                function,
                seq,
                expected,
                None,
                message=f"the replayed run wrote {replayed_head} items to {name!r}; the "
                f"recording has {recorded_head}",
            )
            return StreamResult(
                name, function, DIVERGED, seq, recorded_head, replayed_head, divergence
            )
        if codec.canonical(expected) != codec.canonical(actual):
            divergence = Divergence(
                ITEM,
                name,
                function,
                seq,
                expected,
                actual,
                diff=tuple(structural_diff(expected, actual)),
                message=f"the replayed run wrote a different item to {name!r} at seq {seq}",
            )
            return StreamResult(
                name, function, DIVERGED, seq, recorded_head, replayed_head, divergence
            )
        seq += 1
    return StreamResult(name, function, IDENTICAL, seq, recorded_head, replayed_head)


_END: Any = object()
