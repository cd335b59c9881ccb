"""Per-execution replay: today's code over recorded inputs, parameters and effects.

Each selected execution runs alone, behind a :class:`~perper.replay.host.ReplayHost`
wrapped in a real :class:`~perper.Context`; this module drives its async generator and
compares what it yields with the recorded output stream (the stream named by the
execution's id). No runtime, no writes; the fast pass drives the function from a task of
its own (a short coroutine chain, see :meth:`_ExecutionReplay._attempt`).

The comparison runs at two speeds. The fast pass compares a recorded segment
:data:`CHUNK` items at a time: the yielded items are packed together and their bytes
found at their place in the stored segment (items are compared by
:func:`perper.codec.canonical`, and a segment is stored as exactly that packing), so the
cost per item is a list append and a countdown. When a chunk differs, the first
differing item is found by decoding the segment (an item stored with other bytes that
decode to an equal item is equal, as for recovery's idempotent append); to report the input
positions at the moment that item was yielded, the execution is then replayed again,
item by item, up to that seq — replay is deterministic, so it meets the same item. The
item-by-item pass also serves ``until`` and the debugger.
"""

from __future__ import annotations

import asyncio
import bdb
import contextlib
import logging
import os
import pdb
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType, TracebackType
from typing import Any

from perper import codec
from perper.app import App, Kind, StreamFunction, load_app
from perper.batch import Batch
from perper.context import Context
from perper.diff import structural_diff
from perper.errors import ConfigError, EncodeError, FormatError, ReplayError
from perper.replay.clock import DEFAULT_FROZEN_TIME, FrozenClock, frozen_readings
from perper.replay.host import ReplayHost, ReplayStop
from perper.replay.log import open_log
from perper.replay.results import (
    DIVERGED,
    EFFECT,
    EXCEPTION,
    FAILURE,
    IDENTICAL,
    ITEM,
    LONGER,
    SHORTER,
    START,
    STOPPED,
    UNREPLAYABLE,
    Divergence,
    DivergenceKind,
    Outcome,
    ReplayResult,
    ReplayResults,
    short_repr,
)
from perper.runtime.calls import CALL_KINDS, outcome_of
from perper.runtime.listing import start_order
from perper.runtime.records import (
    EFFECTS_SUFFIX,
    FAILED,
    RUNNING,
    ExecutionRecord,
    RunRecord,
)
from perper.store.base import LogStore, decode_segment, segment_packed

#: A divergence kind: the replay reads an input past where the recording stopped reading.
INPUT = DivergenceKind.INPUT

#: ``progress(execution, items_compared, recorded_items)``, called after each segment.
Progress = Callable[[str, int, int], None]

# Held in a tuple so freezegun, which patches module attributes, leaves it real.
_REAL_CLOCK = (time.perf_counter,)


def replay(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    function: str | None = None,
    execution: str | None = None,
    run: str | None = None,
    until: int | None = None,
    debug: bool = False,
    freeze_clock: bool = True,
    progress: Progress | None = None,
) -> ReplayResults:
    """Replay recorded executions of ``log`` with today's code of ``app`` and compare.

    Each selected execution runs over its recorded inputs, parameters and effects; its
    output goes to an in-memory overlay and is compared item by item with the recorded
    output. The log is opened read-only and never modified.

    Args:
        log: a SQLite file, a store URL, or an open :class:`~perper.LogStore`.
        app: the :class:`~perper.App`, or the path of the file defining it.
        function: replay only the executions of this function.
        execution: replay only this execution.
        run: replay only the executions of this run.
        until: stop each execution just before it yields this seq.
        debug: open pdb before ``until`` (or at the first divergence, or post-mortem at
            an exception), with the function's locals and ``ctx`` in reach.
        freeze_clock: freeze ``time.time()``/``datetime.now()`` at the execution's
            recorded ``ctx.now()`` values (best effort; needs freezegun).
        progress: called as ``progress(execution, compared, recorded)`` after each segment.

    Returns:
        :class:`ReplayResults`, one :class:`ReplayResult` per execution, in start order.

    Raises:
        ReplayError: the log cannot be opened, holds no executions, or none matches the
            selection; or this is called inside a running event loop (use
            :func:`replay_async` there).
        ConfigError: ``app`` is a file that does not define an app.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ReplayError(
            "perper.replay.replay() was called inside a running event loop; "
            "use 'await perper.replay.replay_async(...)' there"
        )
    return asyncio.run(
        replay_async(
            log,
            app,
            function=function,
            execution=execution,
            run=run,
            until=until,
            debug=debug,
            freeze_clock=freeze_clock,
            progress=progress,
        )
    )


def resolve_record(
    app: App, record: ExecutionRecord
) -> tuple[StreamFunction, dict[str, Any]] | str:
    """Today's function of a recorded execution and its recorded parameters bound to it,
    or the reason it cannot be replayed (removed, changed kind, parameters no longer fit)."""
    fn = app.functions.get(record.function)
    if fn is None:
        return (
            f"the app {app.name!r} has no function {record.function!r} (it has "
            f"{', '.join(sorted(app.functions)) or 'none'}; recorded as {record.id!r}): it "
            "was removed or renamed; replay this log with the code that has it, or register "
            "it again"
        )
    if (record.kind == Kind.LAUNCHER) != (fn.kind == Kind.LAUNCHER):
        return (
            f"{record.function!r} was recorded as a {record.kind} but is a {fn.kind} in "
            f"app {app.name!r}"
        )
    params = codec.unpack(record.params)
    try:
        if record.kind in CALL_KINDS:  # a call records its arguments as given
            bound = fn.bind(tuple(params["args"]), params["kwargs"])
        else:
            bound = fn.bind((), params)
    except ConfigError as error:
        cause = error.__cause__ or error
        return (
            f"the recorded parameters of {record.id!r}, {short_repr(params)}, no longer "
            f"fit its signature {fn.name}{fn.signature}: {cause}"
        )
    return fn, bound


async def replay_async(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    function: str | None = None,
    execution: str | None = None,
    run: str | None = None,
    until: int | None = None,
    debug: bool = False,
    freeze_clock: bool = True,
    progress: Progress | None = None,
) -> ReplayResults:
    """:func:`replay`, for callers already in an event loop."""
    if until is not None and until < 0:
        raise ConfigError(f"until={until!r} must be a seq, 0 or more")
    application = as_app(app)
    store, owned = open_log(log)
    try:
        records = await recorded_executions(store)
        selected = select(store, records, function=function, execution=execution, run=run)
        notes = [
            f"run {record.name!r} was recorded by app {record.app!r}; replaying it with "
            f"app {application.name!r}"
            for record in await recorded_runs(store)
            if record.app != application.name and any(r.run == record.name for r in selected)
        ]
        results = []
        with FrozenClock(freeze_clock) as clock:
            if freeze_clock and not clock.available:
                notes.append(
                    "freezegun is not installed: direct time.time() and "
                    "datetime.now() calls see the real clock (pip install freezegun)"
                )
            for record in selected:
                replayer = _ExecutionReplay(store, application, record, records, clock, progress)
                results.append(await replayer.replay(until=until, debug=debug))
        return ReplayResults(store.url, application.name, tuple(results), tuple(notes))
    finally:
        if owned:
            await store.close()


def as_app(app: App | str | os.PathLike[str]) -> App:
    """``app`` itself, or the app the file ``app`` defines."""
    if isinstance(app, App):
        return app
    if isinstance(app, (str, os.PathLike)):
        return load_app(Path(os.fspath(app)))
    raise ConfigError(f"app={app!r}: pass a perper.App or the path of the file defining it")


async def recorded_executions(store: LogStore) -> dict[str, ExecutionRecord]:
    """Every execution recorded in ``store``, by id."""
    return {
        key: ExecutionRecord.from_meta(meta.value, key)
        for key, meta in await store.meta_scan("executions")
    }


async def recorded_runs(store: LogStore) -> list[RunRecord]:
    """Every run recorded in ``store``."""
    return [RunRecord.from_meta(meta.value) for _, meta in await store.meta_scan("runs")]


def select(
    store: LogStore,
    records: dict[str, ExecutionRecord],
    *,
    function: str | None = None,
    execution: str | None = None,
    run: str | None = None,
) -> list[ExecutionRecord]:
    """The recorded executions matching the filters, in run and start order.

    Raises:
        ReplayError: the log holds no executions, or none matches.
    """
    if not records:
        raise ReplayError(
            f"{store.url} holds no executions to replay: record a run into it "
            "(perper run --store ...) or export one (perper export)"
        )
    chosen = list(records.values())
    what = []
    if run is not None:
        chosen = [r for r in chosen if r.run == run]
        what.append(f"of run {run!r}")
    if function is not None:
        chosen = [r for r in chosen if r.function == function]
        what.append(f"of function {function!r}")
    if execution is not None:
        chosen = [r for r in chosen if r.id == execution]
        what.append(f"named {execution!r}")
    if not chosen:
        functions = sorted({r.function for r in records.values()})
        runs = sorted({r.run for r in records.values()})
        raise ReplayError(
            f"{store.url} has no execution {' '.join(what)}; its functions are "
            f"{', '.join(functions)} and its runs {', '.join(runs)}"
        )
    chosen.sort(key=lambda r: (r.run, start_order(r.id)))
    return chosen


class ReplayPdb(pdb.Pdb):
    """pdb with ``ctx`` in reach in every frame it stops in."""

    def __init__(self, ctx: Context, *, first_stop: CodeType | None = None) -> None:
        super().__init__()
        self.replay_ctx = ctx
        # Until it first stops, stop only in this code (the user's function): a generator
        # not started yet (seq 0) runs asyncio's first-iteration hook before its own code.
        self.first_stop = first_stop

    def stop_here(self, frame: FrameType) -> bool:
        if self.first_stop is not None:
            if frame.f_code is not self.first_stop:
                return False
            self.first_stop = None
        return bool(super().stop_here(frame))

    def setup(self, f: FrameType | None, tb: TracebackType | None) -> None:
        super().setup(f, tb)
        namespace = getattr(self, "curframe_locals", None)
        if isinstance(namespace, dict):
            namespace.setdefault("ctx", self.replay_ctx)


@dataclass
class _Attempt:
    """What one pass over an execution saw."""

    host: ReplayHost
    ctx: Context
    compared: int = 0
    error: BaseException | None = None
    error_positions: dict[str, int] = field(default_factory=dict)
    mismatch: tuple[int, Any, Any] | None = None  # fast pass: (seq, expected, actual)
    stopped: bool = False  # until reached (or the debugger quit)
    cut: bool = False  # the recorded output of an unfinished execution ran out
    unrecorded: int = 0  # encodable items yielded past the end of an encode failure
    batched: bool = False  # fast pass: the function has yielded a Batch


#: Items compared at once by the fast pass: a countdown from at most 256 stays among
#: CPython's cached small ints (a larger one allocates and frees an int per item).
CHUNK = 256


def _array_header(packed: bytes) -> tuple[int, int] | None:
    """``(size, count)`` of the msgpack array header ``packed`` starts with, or None."""
    if not packed:
        return None
    kind = packed[0]
    if 0x90 <= kind <= 0x9F:
        return 1, kind & 0x0F
    if kind == 0xDC and len(packed) >= 3:
        return 3, int.from_bytes(packed[1:3], "big")
    if kind == 0xDD and len(packed) >= 5:
        return 5, int.from_bytes(packed[1:5], "big")
    return None


class _Recorded:
    """The recorded output of one execution, segment by segment, as stored.

    A segment is stored as the packing of its item list: an array header, then each
    item's :func:`perper.codec.canonical` bytes one after the other. So the items yielded
    for it compare a chunk at a time, by packing the chunk and finding its bytes (less
    the chunk's own array header) at ``offset`` in the segment's; ``done`` items of the
    segment are compared so far. A segment whose bytes are not the canonical packing of
    its items (``offset`` None) compares decoded, item by item, as recovery does.
    """

    def __init__(self, log: LogStore, stream: str) -> None:
        # Raw segments, so a whole segment compares by its bytes and decodes only on a
        # mismatch (the contract's primitive; read_batches would decode every item).
        self._segments: AsyncIterator[tuple[int, int, bytes]] = log.segments(
            stream, 0, None
        ).__aiter__()
        self.stream = stream
        self.where = log.url
        self.first = 0
        self.count = 0
        self.data: bytes | None = None
        self.packed = b""
        self.done = 0
        self.offset: int | None = None
        self._items: list[Any] | None = None

    async def advance(self) -> bool:
        """Move to the next segment; False (and ``data`` None) at the end."""
        self.first += self.count
        self.done = 0
        self._items = None
        try:
            first, count, data = await self._segments.__anext__()
        except StopAsyncIteration:
            self.count = 0
            self.data = None
            self.packed = b""
            self.offset = None
            return False
        self.first, self.count, self.data = first, count, data
        self.packed = segment_packed(data)
        header = _array_header(self.packed)
        # A header that does not say ``count`` items: compared decoded (decoding a
        # corrupt segment raises FormatError).
        self.offset = header[0] if header is not None and header[1] == count else None
        return True

    def matches(self, items: list[Any]) -> bool:
        """True if ``items`` pack to the segment's next bytes; if so they count as
        compared. False says nothing yet: compare them decoded."""
        offset = self.offset
        done = self.done + len(items)
        if offset is None or done > self.count:
            return False
        try:
            chunk = codec.canonical(items)
        except (TypeError, ValueError, OverflowError):
            return False
        header = _array_header(chunk)
        assert header is not None  # the packing of a list
        body = chunk[header[0] :]
        end = offset + len(body)
        packed = self.packed
        if not packed.startswith(body, offset) or (done == self.count) != (end == len(packed)):
            return False
        self.offset, self.done = end, done
        return True

    def items(self) -> list[Any]:
        if self._items is None:
            assert self.data is not None
            self._items = decode_segment(
                self.first,
                self.count,
                self.data,
                stream=self.stream,
                where=self.where,
                checked=True,  # log.segments() verified the checksum
            )
        return self._items


def _flatten(out: list[Any]) -> bool:
    """Replace each Batch in ``out`` by its items, in place; False if it holds none."""
    if not any(item.__class__ is Batch for item in out):
        return False
    flat: list[Any] = []
    for item in out:
        if item.__class__ is Batch:
            flat.extend(item.items)
        else:
            flat.append(item)
    out[:] = flat
    return True


def _same(expected: Any, actual: Any) -> bool:
    try:
        return codec.canonical(expected) == codec.canonical(actual)
    except (TypeError, ValueError, OverflowError):
        return False


class _ExecutionReplay:
    def __init__(
        self,
        log: LogStore,
        app: App,
        record: ExecutionRecord,
        records: dict[str, ExecutionRecord],
        clock: FrozenClock,
        progress: Progress | None,
    ) -> None:
        self.log = log
        self.app = app
        self.record = record
        self.records = records
        self.clock = clock
        self.progress = progress
        self.complete = record.status != RUNNING
        # The execution failed with an EncodeError: the batch holding the unencodable
        # item was refused whole, so encodable items before it may be missing from the
        # recording (see _past_end).
        self.encode_failure = record.status == FAILED and "EncodeError" in (
            _last_line(record.error) or ""
        )
        self.effects: list[Any] = []
        self.recorded_items = 0
        self.fn: StreamFunction | None = None
        self.params: dict[str, Any] = {}

    def _result(self, outcome: Outcome, started: float, **fields: Any) -> ReplayResult:
        record = self.record
        return ReplayResult(
            execution=record.id,
            function=record.function,
            kind=record.kind,
            recorded_status=record.status,
            outcome=outcome,
            recorded_items=self.recorded_items,
            seconds=_REAL_CLOCK[0]() - started,
            **fields,
        )

    async def replay(self, *, until: int | None, debug: bool) -> ReplayResult:
        started = _REAL_CLOCK[0]()
        record = self.record
        self.recorded_items = (await self.log.info(record.id)).head
        reason = self._check_replayable()
        if reason is not None:
            return self._result(UNREPLAYABLE, started, reason=reason)
        self.effects = [effect async for _, effect in self.log.read(record.id + EFFECTS_SUFFIX)]

        if until is not None:
            attempt = await self._attempt(stop_before=until, locate=False, debug=debug)
        else:
            attempt = await self._attempt(stop_before=None, locate=False, debug=False)
        notes: list[str] = []
        divergence = await self._judge(attempt, notes)
        if debug and until is not None and divergence is not None and divergence.seq < until:
            # It diverged before the seq asked for: stop there instead of running past it.
            await self._attempt(stop_before=divergence.seq, locate=True, debug=True)

        if divergence is None and attempt.mismatch is not None:
            # Found by the fast pass: replay again item by item to the divergent item,
            # to know what each input had been consumed up to when it was yielded.
            seq, expected, actual = attempt.mismatch
            located = await self._attempt(stop_before=seq, locate=True, debug=debug)
            divergence = located.host.divergence
            if divergence is None or divergence.seq != seq:
                if not located.stopped:  # (stopped: the debugger was quit on the way)
                    notes.append(
                        "a second replay up to this item did not meet it again: "
                        "the function is not deterministic even over the recording"
                    )
                divergence = divergence or self._item_divergence(seq, expected, actual, {})
            attempt.compared = min(attempt.compared, divergence.seq)
        elif debug and divergence is not None and until is None:
            if divergence.kind == LONGER:
                await self._attempt(stop_before=divergence.seq, locate=True, debug=True)
            elif attempt.error is not None and attempt.error.__traceback__ is not None:
                _post_mortem(attempt.ctx, attempt.error.__traceback__)

        common = {
            "items_compared": attempt.compared,
            "items_read": sum(attempt.host.positions().values()),
            "starts_compared": attempt.host.starts_compared,
            "effects_replayed": attempt.host.effect_position,
        }
        if divergence is not None:
            return self._result(
                DIVERGED, started, divergence=divergence, notes=tuple(notes), **common
            )
        if attempt.stopped:
            return self._result(
                STOPPED, started, stopped_before=until, notes=tuple(notes), **common
            )
        return self._result(IDENTICAL, started, notes=tuple(notes), **common)

    def _check_replayable(self) -> str | None:
        resolved = resolve_record(self.app, self.record)
        if isinstance(resolved, str):
            return resolved
        self.fn, self.params = resolved
        return None

    # ------------------------------------------------------------ one pass

    async def _attempt(self, *, stop_before: int | None, locate: bool, debug: bool) -> _Attempt:
        fn = self.fn
        assert fn is not None
        host = ReplayHost(
            self.log,
            self.app,
            self.record,
            records=self.records,
            effects=self.effects,
            complete=self.complete,
            clock=self.clock,
        )
        self.clock.move_to(_first_now(self.effects))
        ctx = Context(host, logging.getLogger(f"{self.app.name}.{fn.name}"))
        attempt = _Attempt(host, ctx)
        recorded = _Recorded(self.log, self.record.id)
        out: list[Any] = []
        agen: Any = None
        try:
            try:
                if fn.kind == Kind.LAUNCHER:
                    await fn.fn(ctx, **self.params)
                else:
                    result: Any
                    if fn.kind in CALL_KINDS:  # its output is its one outcome item
                        result = outcome_of(fn, ctx, self.params)
                    else:
                        result = fn.fn(ctx, **self.params)
                    if hasattr(result, "__anext__"):
                        agen = result
                        if stop_before is None:
                            # In a task of its own: each item's two StopIterations walk
                            # the chain of running coroutines (CPython looks for an
                            # exception being handled), which the task keeps short.
                            await asyncio.ensure_future(
                                self._drive_fast(agen, recorded, out, attempt)
                            )
                        else:
                            await self._drive_checked(
                                agen, recorded, attempt, stop_before, locate, debug
                            )
                    else:
                        await result
            except ReplayStop:
                pass
            except bdb.BdbQuit:
                attempt.stopped = True
            except FormatError:
                raise  # the log is corrupt: not the code's fault, and no verdict on it
            except Exception as error:
                attempt.error = error
                attempt.error_positions = host.positions()
            if out and attempt.mismatch is None:
                # Items yielded before the function stopped (a start, an effect, an
                # exception) came first: a mismatch among them is the first divergence.
                try:
                    await self._compare(recorded, out, attempt, final=True)
                except EncodeError as error:  # what the runtime failed with (_past_end)
                    if attempt.error is None:
                        attempt.error = error
                        attempt.error_positions = host.positions()
        finally:
            if agen is not None:
                with contextlib.suppress(BaseException):
                    await agen.aclose()
        return attempt

    async def _drive_fast(
        self, agen: Any, recorded: _Recorded, out: list[Any], attempt: _Attempt
    ) -> None:
        """Run the function, comparing what it yields a chunk of a recorded segment at a time.

        The hot loop does no more per item than append it and count down to the end of
        the chunk (the cheapest per-item test there is): it does not look for
        :class:`~perper.Batch`. A Batch cannot be packed, so a chunk holding one fails
        the byte comparison, and :meth:`_compare` then flattens it and switches to the
        loop that counts each Batch as its items. The first item is looked at, as a
        function that yields Batches usually starts with one, so that its Batches are
        counted as items from the start, not held a segment's worth of yields long.
        """
        append = out.append
        remaining = min(CHUNK, recorded.count) if await recorded.advance() else 1
        async for item in agen:
            if item.__class__ is Batch:
                attempt.batched = True
            append(item)
            remaining -= 1
            if not remaining or attempt.batched:
                remaining = await self._compare(recorded, out, attempt)
                if not remaining:
                    return
            break
        else:
            return
        if not attempt.batched:
            async for item in agen:
                out.append(item)  # (a method call: 3.11 inlines list.append here)
                remaining -= 1
                if remaining == 0:  # (an int compare, no truth-value call)
                    remaining = await self._compare(recorded, out, attempt)
                    if not remaining:
                        return
                    if attempt.batched:
                        break
            else:
                return
        # The function yields Batches: count each as its items.
        extend = out.extend
        async for item in agen:
            if item.__class__ is Batch:
                items = item.items
                extend(items)
                remaining -= len(items)
            else:
                append(item)
                remaining -= 1
            if remaining <= 0:
                remaining = await self._compare(recorded, out, attempt)
                if not remaining:
                    return

    async def _compare(
        self, recorded: _Recorded, out: list[Any], attempt: _Attempt, *, final: bool = False
    ) -> int:
        """Compare the items yielded so far with the recording, a chunk at a time.

        Returns how many more items to collect before the next call (at most
        :data:`CHUNK`, never past the end of the current segment; 1 past the recorded
        end: each further item is judged as it comes), 0 to stop: a mismatch (in
        ``attempt.mismatch``), the end of the recorded output of an unfinished
        execution, or ``final`` (the function has stopped; what it yielded of a last,
        partial segment is compared). Items yielded past the recorded end of a finished
        execution are a divergence: raised to unwind the function, or, when ``final``,
        only recorded.
        """
        while True:
            if recorded.data is None:
                if not out:
                    return 1
                if _flatten(out):
                    attempt.batched = True
                    continue
                if self._past_end(out, attempt):
                    return 1
                if not self.complete:
                    attempt.cut = True
                    return 0
                divergence = attempt.host.diverge(
                    LONGER,
                    recorded.first,
                    None,
                    out[0],
                    f"the replay yielded more items than the {self.recorded_items} recorded",
                )
                if final:
                    return 0
                raise divergence
            seq = recorded.first + recorded.done
            left = recorded.count - recorded.done
            size = len(out)
            if not size:
                return min(CHUNK, left)
            # The fast path: the chunk's bytes are the segment's next bytes.
            if size <= left and recorded.matches(out):
                out.clear()
                if size == left:
                    if not await self._next_segment(recorded, attempt):
                        return 1
                    return min(CHUNK, recorded.count)
                attempt.compared = seq + size
                return 0 if final else min(CHUNK, left - size)
            if _flatten(out):
                attempt.batched = True
                continue
            if size > left and recorded.matches(out[:left]):  # past the segment (Batches)
                del out[:left]
                await self._next_segment(recorded, attempt)
                continue
            # Decoded, item by item: the first differing item, or (the segment's bytes
            # are not the canonical packing of its items) items that encode alike.
            expected_items = recorded.items()
            done = recorded.done
            for index, actual in enumerate(out[:left]):
                expected = expected_items[done + index]
                if not _same(expected, actual):
                    attempt.mismatch = (seq + index, expected, actual)
                    attempt.compared = seq + index
                    return 0
            matched = min(size, left)
            del out[:matched]
            recorded.done = done + matched
            recorded.offset = None  # the rest of this segment compares decoded too
            if matched == left:
                await self._next_segment(recorded, attempt)
                continue
            attempt.compared = seq + matched
            return 0 if final else min(CHUNK, left - matched)

    async def _next_segment(self, recorded: _Recorded, attempt: _Attempt) -> bool:
        """The current segment compared equal: count it, report progress, move on."""
        attempt.compared = recorded.first + recorded.count
        if self.progress is not None:
            self.progress(self.record.id, attempt.compared, self.recorded_items)
        return await recorded.advance()

    async def _drive_checked(
        self,
        agen: Any,
        recorded: _Recorded,
        attempt: _Attempt,
        stop_before: int,
        locate: bool,
        debug: bool,
    ) -> None:
        host = attempt.host
        seq = 0
        await recorded.advance()
        pending: list[Any] = []  # the rest of a yielded Batch, last item first
        while True:
            if seq == stop_before:
                if debug:
                    _open_debugger(attempt.ctx, agen, self.record, seq, locate)
                elif not locate:
                    attempt.stopped = True
                    return
            try:
                while not pending:
                    item = await agen.__anext__()
                    if item.__class__ is not Batch:
                        break
                    pending = item.items[::-1]
                if pending:
                    item = pending.pop()
            except StopAsyncIteration:
                return
            if seq == stop_before and not locate:
                attempt.stopped = True  # the debugger has let the function compute it
                return
            while recorded.data is not None and seq >= recorded.first + recorded.count:
                await recorded.advance()
            if recorded.data is None:
                if self._past_end([item], attempt):
                    seq += 1
                    continue
                if not self.complete:
                    attempt.cut = True
                    return
                raise host.diverge(
                    LONGER,
                    seq,
                    None,
                    item,
                    f"the replay yielded more items than the {self.recorded_items} recorded",
                )
            expected = recorded.items()[seq - recorded.first]
            if not _same(expected, item):
                divergence = self._item_divergence(seq, expected, item, host.positions())
                host.divergence = divergence
                return
            seq += 1
            attempt.compared = seq
            if locate and seq > stop_before:
                return

    def _past_end(self, out: list[Any], attempt: _Attempt) -> bool:
        """Items yielded past the recorded end of an execution that failed with an
        EncodeError: the runtime refused the whole batch holding the unencodable item, so
        encodable items before it were never recorded. They are not a divergence; the
        unencodable one raises the EncodeError the recording ended with. False when the
        execution did not fail that way (the caller judges the items)."""
        if not self.encode_failure:
            return False
        for item in out:
            seq = self.recorded_items + attempt.unrecorded
            try:
                codec.pack(item, what="item")
            except EncodeError as error:
                raise EncodeError(
                    error.type_name, f"{self.record.function!r}'s item at seq {seq}"
                ) from error
            attempt.unrecorded += 1
        out.clear()
        return True

    # ----------------------------------------------------------- verdicts

    def _item_divergence(
        self, seq: int, expected: Any, actual: Any, positions: dict[str, int]
    ) -> Divergence:
        try:
            codec.canonical(actual)
            diff = structural_diff(expected, actual)
            message = f"the replay yielded a different item at seq {seq}"
            frozen = frozen_readings(actual, self.clock.instants, expected)
            if frozen:
                message += (
                    f"; {', '.join(repr(t) for t in frozen)} in it is a reading of the "
                    "replay's frozen clock, not a real time: the function reads "
                    "time.time()/datetime.now() directly (use ctx.now(), which is recorded)"
                )
        except (TypeError, ValueError, OverflowError):
            diff = []
            message = f"the replay yielded an item at seq {seq} that cannot be encoded"
        return Divergence(
            kind=ITEM,
            execution=self.record.id,
            function=self.record.function,
            seq=seq,
            expected=expected,
            actual=actual,
            diff=tuple(diff),
            input_positions=positions,
            message=message,
        )

    async def _recorded_item(self, seq: int) -> Any:
        async for _, item in self.log.read(self.record.id, start=seq, stop=seq + 1):
            return item
        return None

    async def _judge(self, attempt: _Attempt, notes: list[str]) -> Divergence | None:
        """The first divergence of a pass (other than a fast-pass item mismatch)."""
        host = attempt.host
        record = self.record
        if attempt.mismatch is not None:
            return None  # located by a second pass
        if host.divergence is not None:
            return host.divergence
        if attempt.stopped:
            return None
        if host.end_of_recording is not None:
            if self.complete:
                return Divergence(
                    kind=INPUT,
                    execution=record.id,
                    function=record.function,
                    seq=attempt.compared,
                    expected=None,
                    actual=host.end_of_recording,
                    input_positions=host.positions(),
                    message=f"the replay reads further than the recorded {record.status} "
                    f"execution did: {host.end_of_recording}",
                )
            notes.append(
                f"the recording ends here ({host.end_of_recording}); "
                f"{attempt.compared} of its items were compared"
            )
            return None
        if attempt.cut:
            notes.append(
                f"the recorded execution was {record.status}: all "
                f"{self.recorded_items} of its recorded items were reproduced"
            )
            return None
        error = attempt.error
        recorded_failure = _last_line(record.error) if record.status == FAILED else None
        if error is not None:
            text = "".join(traceback.format_exception(error)).rstrip()
            last = _last_line(text) or type(error).__name__
            if recorded_failure is not None and attempt.compared >= self.recorded_items:
                if last == recorded_failure or (
                    self.encode_failure and isinstance(error, EncodeError)
                ):
                    notes.append(f"reproduced the recorded failure: {recorded_failure}")
                    return None
                return Divergence(
                    kind=FAILURE,
                    execution=record.id,
                    function=record.function,
                    seq=attempt.compared,
                    expected=recorded_failure,
                    actual=last,
                    input_positions=attempt.error_positions,
                    traceback=text,
                    message="the replay failed otherwise than the recorded execution",
                )
            expected = None
            if attempt.compared < self.recorded_items:
                expected = await self._recorded_item(attempt.compared)
            return Divergence(
                kind=EXCEPTION,
                execution=record.id,
                function=record.function,
                seq=attempt.compared,
                expected=expected,
                actual=last,
                input_positions=attempt.error_positions,
                traceback=text,
                message=f"the replay raised {type(error).__name__} after {attempt.compared} "
                "items, where the recording "
                + (
                    "has more items"
                    if attempt.compared < self.recorded_items
                    else "finished without error"
                ),
            )
        # The function finished.
        if attempt.compared < self.recorded_items:
            return Divergence(
                kind=SHORTER,
                execution=record.id,
                function=record.function,
                seq=attempt.compared,
                expected=await self._recorded_item(attempt.compared),
                actual=None,
                input_positions=host.positions(),
                message=f"the replay finished after {attempt.compared} items; the recording "
                f"has {self.recorded_items}",
            )
        if not self.complete:
            return None
        if recorded_failure is not None:
            return Divergence(
                kind=FAILURE,
                execution=record.id,
                function=record.function,
                seq=attempt.compared,
                expected=recorded_failure,
                actual="finished without error",
                input_positions=host.positions(),
                message="the recorded execution failed; the replay finished without error",
            )
        missing = sorted(
            (
                r
                for r in self.records.values()
                if r.parent == record.id and r.id not in host.started
            ),
            key=lambda r: start_order(r.id),
        )
        if missing:
            child = missing[0]
            return Divergence(
                kind=START,
                execution=record.id,
                function=record.function,
                seq=host.starts_compared,
                expected={"function": child.function, "params": codec.unpack(child.params)},
                actual=None,
                input_positions=host.positions(),
                message=f"the recording started {child.id!r} ({child.function}); the replay "
                f"did not ({len(missing)} recorded starts missing)",
            )
        if host.effect_position < len(self.effects):
            kind, _ = self.effects[host.effect_position]
            return Divergence(
                kind=EFFECT,
                execution=record.id,
                function=record.function,
                seq=host.effect_position,
                expected=f"ctx.{kind}()",
                actual=None,
                input_positions=host.positions(),
                message=f"the replay used {host.effect_position} of the "
                f"{len(self.effects)} recorded effects",
            )
        return None


def _first_now(effects: list[Any]) -> float:
    for kind, value in effects:
        if kind == "now":
            return float(value)
    return DEFAULT_FROZEN_TIME


def _last_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _open_debugger(
    ctx: Context, agen: Any, record: ExecutionRecord, seq: int, locate: bool
) -> None:
    why = "the first divergence" if locate else "where you asked to stop"
    print(
        f"perper replay: {record.function} ({record.id}) is about to compute the item at "
        f"seq {seq} ({why}).\n"
        f"  pdb stops where the function resumes{' after yielding seq ' + str(seq - 1) if seq else ''}"
        ": 'n' steps towards its next yield, 'p ctx.state' shows its state, 'c' continues.",
        file=sys.stdout,
        flush=True,
    )
    debugger = ReplayPdb(ctx, first_stop=agen.ag_code)
    # Stops at the first line the generator runs once resumed, in its own frame.
    debugger.set_trace(agen.ag_frame)


def _post_mortem(ctx: Context, tb: TracebackType) -> None:
    print(
        "perper replay: post-mortem at the replay's exception ('p ctx.state', 'q' quits)",
        file=sys.stdout,
        flush=True,
    )
    debugger = ReplayPdb(ctx)
    debugger.reset()
    with contextlib.suppress(bdb.BdbQuit):
        debugger.interaction(None, tb)
