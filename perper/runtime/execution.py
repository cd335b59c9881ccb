"""One execution running in this process: the host behind its Context.

The order of writes is what makes every crash recoverable:

1. recorded effects, then the output items that may depend on them (``flush``);
2. then the checkpoint that covers them (``checkpoint``);
3. at the end, the final checkpoint, the seal of the output stream, the ``done`` status.

A crash between any two steps leaves a checkpoint older than the outputs; recovery
re-yields items already stored, and the idempotent append compares instead of writing.

A checkpoint describes a point the function can really resume from: it is inside one
``ctx.read`` (the function asked it for the next item) or at the function's end, and
every other read the function opened is finished. Resuming runs the function again from
its top with ``ctx.state`` restored; what it yields, records and starts before it reaches
that point (a prologue before the first read, the code between two reads, what follows
the last one) is compared with what it did the first time, at the same output seqs,
effect positions and start indices, which each read records when it is opened and when
it ends. A finished read yields nothing on resumption; the resumed read continues at its
checkpointed position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import random
import traceback
import types
import weakref
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from typing import Any, Protocol

from perper import codec
from perper.agents import Caller
from perper.app import App, Kind, StreamFunction
from perper.batch import Batch
from perper.context import Context
from perper.diff import structural_diff
from perper.errors import (
    ConfigError,
    ConflictError,
    EncodeError,
    FencedError,
    FormatError,
    NondeterminismError,
    StoreUnavailableError,
    TrimmedError,
)
from perper.runtime.calls import CALL_KINDS, CallSupport, ExecutionCalls, run_call
from perper.runtime.destroy import cancel_writer, destroy_stream
from perper.runtime.ids import DONE, EFFECTS_SUFFIX, FAILED, Status, child_stream
from perper.runtime.records import ExecutionRecord
from perper.runtime.retention import Retention, checkpoint_needs, query_effect, query_range
from perper.runtime.settings import Boundary, PlantedBug, RuntimeHooks, RuntimeSettings
from perper.store.base import KEEP, LogStore
from perper.store.index import IndexSpec
from perper.streamref import StreamRef

log = logging.getLogger("perper.runtime")


#: ``ctx.log`` of each function, by name: logging.getLogger takes the logging module's
#: lock on every call, and every execution (a restarted one too) asks for one.
_loggers: dict[str, logging.Logger] = {}


def _logger(name: str) -> logging.Logger:
    found = _loggers.get(name)
    if found is None:
        found = _loggers[name] = logging.getLogger(name)
    return found


@types.coroutine
def _turn() -> Generator[None, None, None]:
    """Give the other tasks one turn: ``asyncio.sleep(0)`` without its coroutine (the
    task sees a bare yield and reschedules itself, as it does for sleep(0))."""
    yield


class Worker(Protocol):
    """What an execution needs from the worker running it (the :class:`Runtime`)."""

    store: LogStore
    app: App
    settings: RuntimeSettings
    hooks: RuntimeHooks
    clock: Callable[[], float]
    entropy: random.Random
    stopping: bool
    calls: CallSupport

    def pack_params(self, fn: StreamFunction, params: dict[str, Any]) -> bytes: ...

    async def attach(
        self, execution: str, run: str, fn: StreamFunction, params: bytes, *, parent: str | None
    ) -> ExecutionRecord: ...

    def wake_up(self) -> None: ...

    async def stop_execution(self, execution: str) -> None: ...


#: Where an execution stands: [output items yielded, effects used, ctx.start calls made].
Cursor = list[int]


class ReadSlot:
    """One ``ctx.read`` call of an execution, as a checkpoint records it.

    ``opened`` is the cursor when the read was opened, ``closed`` the cursor when it
    ended (None while it runs). ``position`` is the number of items of ``stream`` the
    function has been handed; while a read hands over a run of decoded items it is
    derived from what is left in that run's iterator (``_run``, which ends at seq ``_end``;
    the read sets both per run) instead of being
    stored once per item.
    """

    __slots__ = ("_end", "_run", "closed", "opened", "stream")

    def __init__(
        self, stream: str, position: int, opened: Cursor, closed: Cursor | None = None
    ) -> None:
        self.stream = stream
        self._end = position
        self._run: Iterator[Any] | None = None
        self.opened = opened
        self.closed = closed

    @property
    def position(self) -> int:
        run = self._run
        if run is None:
            return self._end
        return self._end - operator.length_hint(run)

    @position.setter
    def position(self, value: int) -> None:
        self._end = value
        self._run = None

    def to_meta(self) -> list[Any]:
        return [self.stream, self.position, self.opened, self.closed]

    @classmethod
    def from_meta(cls, value: list[Any]) -> ReadSlot:
        if len(value) == 2:  # a checkpoint from before reads recorded their cursors
            return cls(value[0], value[1], [], None)
        stream, position, opened, closed = value
        return cls(stream, position, list(opened), None if closed is None else list(closed))


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_cursor(value: Any) -> bool:
    return type(value) is list and (not value or (len(value) == 3 and all(map(_is_count, value))))


def _slot_problem(slot: Any) -> str | None:
    if type(slot) is not list or len(slot) not in (2, 4):
        return f"a read position is {slot!r}, not [stream, position, opened, closed]"
    if type(slot[0]) is not str or not _is_count(slot[1]):
        return f"a read position is {slot!r}, not a stream name and a count"
    if len(slot) == 4 and not (_is_cursor(slot[2]) and (slot[3] is None or _is_cursor(slot[3]))):
        return f"a read position's cursors are {slot[2:]!r}"
    return None


def _checkpoint_problem(value: Any) -> str | None:
    if type(value) is not dict:
        return f"it is {type(value).__name__} {value!r:.80}, not a mapping"
    if type(value.get("epoch")) is not int:
        return f"its epoch is {value.get('epoch')!r}"
    if type(value.get("state")) is not dict:
        return f"its ctx.state is {type(value.get('state')).__name__}, not a mapping"
    for name in ("out", "effects", "calls"):
        if not _is_count(value.get(name)):
            return f"its {name!r} is {value.get(name)!r}, not a count"
    if value.get("returned"):
        return None
    positions = value.get("positions")
    if type(positions) is not list:
        return f"its positions are {positions!r}, not a list"
    for slot in positions:
        if (problem := _slot_problem(slot)) is not None:
            return problem
    return None


def checked_checkpoint(execution: str, value: Any) -> dict[str, Any]:
    """``value``, a stored checkpoint of ``execution``, if it has the shape this perper
    writes; else :class:`FormatError` naming what is wrong (a resume from it would fail
    with a traceback, or resume somewhere it never was)."""
    problem = _checkpoint_problem(value)
    if problem is not None:
        raise FormatError(f"the checkpoint of {execution!r} is corrupt: {problem}")
    return value  # type: ignore[no-any-return]


class Stopped(BaseException):
    """Raised inside an execution to stop it without failing it (graceful shutdown)."""


class Execution:
    """Runs one execution under a lease of epoch ``epoch``, for ``worker``."""

    # Scalars that start the same in every execution are class defaults: an inline call
    # builds one Execution per call, and each instance attribute costs.
    blocked: bool = False
    _calls: int = 0
    _effect_position: int = 0
    _out_seq: int = 0
    _in_flight: int = 0  # items taken from the buffer by a flush not yet done
    _timer: asyncio.TimerHandle | None = None
    _buffered_at = 0.0  # loop time the buffer last went from empty to holding an item
    _timed_flush: asyncio.Task[None] | None = None
    _timed_flush_error: BaseException | None = None
    _task: asyncio.Task[Any] | None = None
    _reads: int = 0
    # The cursor of the checkpointed point while re-executing towards it; None once
    # reached (or when nothing was restored).
    _resume_at: Cursor | None = None
    _checkpointing: bool = False
    _countdown: int = 0
    _checkpointed_total: int = 0
    _checkpoint_due: bool = False
    _returned: bool = False  # the function has returned (its final checkpoint says so)
    _checkpoint_timer: asyncio.TimerHandle | None = None
    # The version this execution last wrote its checkpoint at (see _write_checkpoint).
    _checkpoint_version: int | None = None
    _caller: ExecutionCalls | None = None
    _retention: Retention | None = None
    _durable: Any = None  # the last checkpoint written or restored (its value)

    def __init__(self, worker: Worker, record: ExecutionRecord, epoch: int) -> None:
        self.worker = worker
        self.store = worker.store
        self.settings = worker.settings
        self.hooks = worker.hooks
        self.record = record
        self.epoch = epoch
        self.execution = record.id
        self.run = record.run
        self.function = record.function
        self.state: dict[str, Any] = {}
        self._prefix = record.run if record.kind == Kind.LAUNCHER else record.id
        self._effects_stream = record.id + EFFECTS_SUFFIX
        self._recorded_effects: list[Any] = []
        self._pending_effects: list[Any] = []
        # Heads being read for ctx.read(start="live") calls whose effect is pending.
        self._live_heads: list[asyncio.Task[int]] = []
        self._buffer: list[Any] = []
        self._flush_lock = asyncio.Lock()
        self._flushing = 0  # flushes holding or waiting for the lock (a count, not a call)
        self._slots: list[ReadSlot] = []  # per ctx.read call, in the order they opened
        self._readers: list[weakref.ref[AsyncIterator[Any]]] = []  # keeps the callbacks
        self._restored: list[ReadSlot] = []
        self._every = self.settings.checkpoint_every
        self._interval = self.settings.checkpoint_interval
        # A read waiting on a store's write_waiter: (stream, item, since when), and the
        # one timer that checks it against read_wait_warning (see _read and _check_wait).
        self._waiting: tuple[str, int, float] | None = None
        self._wait_watch: asyncio.TimerHandle | None = None
        self._wait_warning: asyncio.Task[None] | None = None
        # Non-empty once a timer or a stop wants a boundary at the function's next item,
        # whatever the countdown: reads look at it once per item (see _read).
        self._wake: list[None] = []
        self._undeclared: list[tuple[str, IndexSpec]] = []  # ctx.ingest(name, index=...)
        bugs = self.hooks.planted_bugs
        self._append_without_compare = PlantedBug.APPEND_WITHOUT_COMPARE in bugs
        self._checkpoint_before_flush = PlantedBug.CHECKPOINT_BEFORE_FLUSH in bugs
        self.unfenced = PlantedBug.IGNORE_FENCING in bugs
        if self.unfenced:
            self.epoch = 0  # writes that every store accepts, whoever holds the lease
        # The first holder of this execution's first lease (epoch 1: the lease row was
        # just created): no earlier run can have made its calls, so ExecutionCalls skips
        # looking them up. An inline callee inherits its caller's (its id is new too).
        self.fresh = self.epoch == 1 and record.kind not in CALL_KINDS

    # ---------------------------------------------------------------- running

    async def main(self) -> None:
        """Run the function to its end; record done or failed. Lost leases and stops end
        the task quietly, leaving the execution to be resumed."""
        worker = self.worker
        record = self.record
        self._task = asyncio.current_task()
        try:
            if record.kind in CALL_KINDS:
                await run_call(self)
                return
            fn = worker.app.function(record.function)
            params = codec.unpack(record.params)
            self._configure(fn)
            if fn.index is not None:
                await self.store.declare_index(record.id, fn.index)
            effects = self.store.info_now(self._effects_stream)
            if effects is None or effects.head:  # (most functions record no effect)
                self._recorded_effects = [
                    effect async for _, effect in self.store.read(self._effects_stream)
                ]
            if self._checkpointing:
                await self._restore()
            if not self._returned:
                ctx = Context(self, _logger(f"{worker.app.name}.{fn.name}"))
                if fn.kind == Kind.LAUNCHER:
                    await fn.fn(ctx, **params)
                else:
                    result = fn.fn(ctx, **params)
                    if hasattr(result, "__anext__"):
                        await self._drain(result)
                    else:
                        await result
                if self._resume_at is not None and self.cursor() != self._resume_at:
                    # It ended without reaching the point it was checkpointed at.
                    self._raise_past_resume_point(self.cursor()[0])
                self._resume_at = None
                self._returned = True
                await self.checkpoint(None)
            # else: its checkpoint was taken after it returned; only the seal was left,
            # and running its code again could not reproduce state it had consumed.
            await self._check_complete()
            self._at(Boundary.FINISHED, self._out_seq)
            if fn.kind != Kind.LAUNCHER:
                await self.store.seal(record.id, epoch=self.epoch)
                self._at(Boundary.SEALED, self._out_seq)
            await self._set_status(DONE)
            await self._trim_inputs([slot.stream for slot in self._slots])
        except asyncio.CancelledError:
            error = self._timed_flush_error
            if error is None:
                raise
            if isinstance(error, (StoreUnavailableError, Stopped)):
                log.warning("execution %s paused: %s", record.id, error)
                raise Stopped() from error
            await self._fail(error)
        except Stopped:
            raise
        except StoreUnavailableError as error:
            # Transient: drop the execution here; this or another worker resumes it.
            log.warning("execution %s paused: %s", record.id, error)
            raise Stopped() from error
        except FormatError:
            # The log is corrupt: not the function's failure. Stop writing (no flush) and
            # let the worker report it; the execution stays running for after a repair.
            raise
        except Exception as error:
            if await self._destroyed():
                log.info("execution %s stopped: its stream was destroyed", record.id)
                return
            if isinstance(error, TrimmedError) and await self._superseded():
                # A newer owner read on and checkpointed past where this one reads, and a
                # trim followed: this owner lost its lease; it stops as if fenced.
                log.warning("execution %s stopped: %s", record.id, error)
                raise Stopped() from error
            if not isinstance(error, (NondeterminismError, EncodeError, FencedError)):
                # What the function yielded before it raised is output like any other.
                with contextlib.suppress(Exception):
                    await self.flush()
            await self._fail(error)
        finally:
            for timer in (self._timer, self._checkpoint_timer, self._wait_watch):
                if timer is not None:
                    timer.cancel()

    async def _superseded(self) -> bool:
        """Whether a newer lease epoch than this execution's was given out."""
        with contextlib.suppress(Exception):
            entry = await self.store.meta_get("leases", self.execution)
            return entry is not None and int(entry.value["epoch"]) > self.epoch
        return False

    async def _destroyed(self) -> bool:
        """Whether this execution was cancelled (its stream destroyed) while it ran."""
        with contextlib.suppress(Exception):
            entry = await self.store.meta_get("executions", self.execution)
            return entry is not None and entry.value["status"] == str(Status.CANCELLED)
        return False

    def _at(self, boundary: Boundary, count: int) -> None:
        hook = self.hooks.on_boundary
        if hook is not None:
            hook(self.execution, boundary, count)

    async def _check_complete(self) -> None:
        """A re-executed function that ends before the items it stored is not the
        function that stored them: say so rather than seal over the extra items."""
        head = (await self.store.info(self.execution)).head
        if head > self._out_seq:
            stored = None
            async for _, item in self.store.read(self.execution, start=self._out_seq):
                stored = item
                break
            raise NondeterminismError(
                execution=self.execution,
                function=self.function,
                seq=self._out_seq,
                stored=stored,
                new="(the end of its output)",
                what="end of output",
            )

    def _raise_past_resume_point(self, yielded: int) -> None:
        assert self._resume_at is not None
        raise NondeterminismError(
            execution=self.execution,
            function=self.function,
            seq=self._resume_at[0],
            stored=f"{self._resume_at[0]} items before the checkpointed point",
            new=f"{yielded} items before reaching it",
            what="output on resuming from its checkpoint",
        )

    async def _fail(self, error: BaseException) -> None:
        if isinstance(error, FencedError):
            log.warning("execution %s stopped: %s", self.execution, error)
            raise Stopped() from error
        text = "".join(traceback.format_exception(error)).rstrip()
        log.debug("execution %s failed: %s", self.execution, text)
        try:
            await self._set_status(FAILED, text)
        except StoreUnavailableError as unavailable:
            # The failure is not recorded: pause, so that this or another worker runs
            # the execution again (and records the failure then) instead of stranding it.
            log.warning("execution %s paused recording its failure: %s", self.execution, error)
            raise Stopped() from unavailable
        self.worker.wake_up()

    def _configure(self, fn: StreamFunction) -> None:
        self._checkpointing = fn.recovery == "checkpoint"
        if fn.checkpoint_every is not None:
            self._every = fn.checkpoint_every
        if fn.checkpoint_interval is not None:
            self._interval = fn.checkpoint_interval
        if self.hooks.force_checkpoint_every is not None:
            self._every = self.hooks.force_checkpoint_every
        self._arm_checkpoint_timer()

    def _arm_checkpoint_timer(self) -> None:
        self._checkpointed_total = self._consumed_total()
        self._checkpoint_due = False
        self._reset_countdown()
        if self._checkpointing:
            if self._checkpoint_timer is not None:
                self._checkpoint_timer.cancel()
            self._checkpoint_timer = asyncio.get_running_loop().call_later(
                self._interval, self._set_checkpoint_due
            )

    def _set_checkpoint_due(self) -> None:
        self._checkpoint_due = True
        self._countdown = 0
        self._wake.append(None)

    async def _restore(self) -> None:
        entry = await self.store.meta_get("checkpoints", self.execution)
        if entry is None:
            return
        checkpoint = checked_checkpoint(self.execution, entry.value)
        await self._check_positions(checkpoint)
        self._durable = checkpoint
        if checkpoint["epoch"] <= self.epoch:
            self._checkpoint_version = entry.version  # what fenced() would accept
        self.state = checkpoint["state"]
        if checkpoint.get("returned"):
            self._returned = True
            self._out_seq = checkpoint["out"]
            self._effect_position = checkpoint["effects"]
            self._calls = checkpoint["calls"]
            return
        self._restored = [ReadSlot.from_meta(slot) for slot in checkpoint["positions"]]
        self._checkpointed_total = sum(slot.position for slot in self._restored)
        at = [checkpoint["out"], checkpoint["effects"], checkpoint["calls"]]
        if any(not slot.opened for slot in self._restored):
            # An old checkpoint without read cursors: resume as it was written.
            self._out_seq, self._effect_position, self._calls = at
        else:
            self._resume_at = at

    async def _check_positions(self, checkpoint: dict[str, Any]) -> None:
        """A read still open in the checkpoint cannot stand beyond its input's head: the
        function was handed only items the store held (and a head never moves back, a
        trim keeps it). Resuming there would skip every item in between in silence."""
        if checkpoint.get("returned"):
            return
        for stream, position, *rest in checkpoint["positions"]:
            if rest and rest[1] is not None:
                continue  # a closed read: nothing resumes there
            info = await self.store.info(stream)
            # A stream deleted since (a destroyed agent's) is left to the read to meet.
            if info is not None and position > info.head:
                raise FormatError(
                    f"the checkpoint of {self.execution!r} is corrupt: its read of "
                    f"{stream!r} stands at {position}, beyond the stream's head {info.head}"
                )

    def cursor(self) -> Cursor:
        """Where the function stands: items yielded, effects used, starts made."""
        yielded = self._out_seq + self._in_flight + len(self._buffer)
        return [yielded, self._effect_position, self._calls]

    async def _drain(self, agen: AsyncIterator[Any]) -> None:
        buffer = self._buffer
        limit = self.settings.batch_size
        delay = self.settings.flush_delay
        loop = asyncio.get_running_loop()
        append = buffer.append
        async for item in agen:
            if item.__class__ is Batch:
                # Its items, in order, as if yielded one by one (see perper.batch).
                items = item.items
                if (
                    len(items) >= limit
                    and not buffer
                    and not self._live_heads
                    and not self._flushing
                ):
                    # A whole segment with nothing before it: append the list as it is
                    # (copying it into the buffer and out again costs as much as its
                    # encoding). Nothing can suspend before it is in flight.
                    await self.flush(items)
                    if self.worker.stopping:
                        raise Stopped()
                    continue
                before = len(buffer)
                buffer.extend(items)
                size = len(buffer)
                if size >= limit:
                    await self.flush()
                    if self.worker.stopping:
                        raise Stopped()
                elif size and not before:
                    self._buffered_at = loop.time()
                    if self._timer is None:
                        self._timer = loop.call_later(delay, self._flush_on_timer)
                continue
            append(item)
            size = len(buffer)
            if size >= limit:
                await self.flush()
                if self.worker.stopping:
                    raise Stopped()
            elif size == 1:
                # A loop timer rather than a clock read per item (one per buffer that
                # fills: it flushes even while the function awaits something else). One
                # timer serves many buffers: a flush leaves it armed, and when it fires it
                # waits on for the buffer filled since (see _flush_on_timer).
                self._buffered_at = loop.time()
                if self._timer is None:
                    self._timer = loop.call_later(delay, self._flush_on_timer)

    def _flush_on_timer(self) -> None:
        self._timer = None
        if not self._buffer:
            return  # flushed since: the next item arms it again
        loop = asyncio.get_running_loop()
        due = self._buffered_at + self.settings.flush_delay
        if loop.time() < due:
            self._timer = loop.call_at(due, self._flush_on_timer)
            return
        if self._timed_flush is None or self._timed_flush.done():
            self._timed_flush = asyncio.get_running_loop().create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except (Exception, Stopped) as error:
            # Fail the execution with it, wherever the function is waiting.
            self._timed_flush_error = error
            if self._task is not None:
                self._task.cancel()

    async def flush(self, batch: list[Any] | None = None, *, turn: bool = True) -> None:
        """Make recorded effects, then buffered output items, durable (in that order, so no
        stored item depends on an effect that is not recorded).

        ``batch``: items yielded after the buffered ones (a Batch's list, appended without
        a copy); the function must not resume before this returns. ``turn``: give the
        other tasks a turn after it (False where the caller is about to wait anyway)."""
        if not self._live_heads and not self._pending_effects and not self._flushing:
            # Nothing can be in flight: the usual case needs no lock.
            buffer = self._buffer
            if batch is None and not buffer:
                if turn:
                    await _turn()
                return
            if self._resume_at is None and not self._append_without_compare:
                # One segment where this execution's last append ended, written by a
                # store that does not suspend (LogStore.append_now); else the path below.
                if not buffer:
                    items = batch if batch is not None else buffer
                else:
                    items = buffer if batch is None else buffer + batch
                count = len(items)
                head = self.store.append_now(self.execution, self._out_seq, items, epoch=self.epoch)
                if head is not None:
                    buffer.clear()  # in place: _drain holds a reference to this list
                    self._out_seq += count
                    if turn:
                        await _turn()
                    return
        self._flushing += 1
        try:
            async with self._flush_lock:
                await self._flush_locked(batch, turn=turn)
        finally:
            self._flushing -= 1

    async def _flush_locked(self, batch: list[Any] | None = None, *, turn: bool = True) -> None:
        while self._live_heads:
            # A live read's effect is recorded with its head: wait for the value (a
            # failed head read stays in line, so its empty effect is never written).
            heads, self._live_heads = self._live_heads, []
            try:
                await asyncio.gather(*heads)
            except BaseException:
                self._live_heads[0:0] = heads
                raise
        # Take the effects and the items together, before any await: an item yielded
        # while this flush is in flight may depend on an effect taken after it, and
        # must wait for the next flush with that effect.
        effects = self._pending_effects
        self._pending_effects = []
        if batch is not None and not self._buffer:
            items = batch
        else:
            items = self._buffer.copy()
            self._buffer.clear()  # in place: _drain holds a reference to this list
            if batch is not None:
                items.extend(batch)
        self._in_flight = len(items)
        try:
            if effects:
                await self._append_effects(effects)
                effects = []
            if items:
                await self._append_items(items)
                items = []
        finally:
            # Whatever was not (known to be) written goes back first in line, so nothing
            # else is written at its positions and the next flush retries it in order.
            self._in_flight = 0
            if effects:
                self._pending_effects[0:0] = effects
            if items:
                self._buffer[0:0] = items
        # Appends to local stores never suspend: give the other executions a turn
        # after each flush, so a busy producer cannot starve its readers.
        if turn:
            await _turn()

    async def _append_effects(self, effects: list[Any]) -> None:
        start = len(self._recorded_effects)
        try:
            await self.store.append(self._effects_stream, start, effects, epoch=self.epoch)
        except ConflictError:
            await self._raise_if_fenced(self._effects_stream)
            # Another owner (one whose lease we took over, still running) recorded these
            # effects first: they are the record. Our computation used other values, so
            # start again from the record.
            log.warning(
                "execution %s: effects were recorded concurrently; restarting", self.execution
            )
            raise Stopped() from None
        self._recorded_effects.extend(effects)

    async def _append_items(self, items: list[Any]) -> None:
        seq = self._out_seq
        if self._resume_at is not None and seq + len(items) > self._resume_at[0]:
            # Re-executing towards the checkpointed point, whose outputs are all stored:
            # an item beyond it would be new output the first run never produced there.
            self._raise_past_resume_point(seq + len(items))
        if self._append_without_compare:
            seq = max(seq, await self.store.head(self.record.id))
        try:
            await self.store.append(self.record.id, seq, items, epoch=self.epoch)
        except ConflictError as conflict:
            await self._raise_if_fenced(self.record.id)
            raise NondeterminismError(
                execution=self.execution,
                function=self.function,
                seq=conflict.seq,
                stored=conflict.stored,
                new=conflict.new,
                diff="\n".join(structural_diff(conflict.stored, conflict.new)),
            ) from None
        except EncodeError as error:
            at = seq + (error.index or 0)
            where = error.path.removeprefix("item")
            raise EncodeError(
                error.type_name, f"{self.function!r}'s item at seq {at}{where}"
            ) from None
        self._out_seq = seq + len(items)
        self._in_flight = 0

    async def _raise_if_fenced(self, stream: str) -> None:
        """A conflict caused by a newer owner's writes means we lost the lease."""
        current = (await self.store.info(stream)).epoch
        if current > self.epoch and not self.unfenced:
            raise FencedError(stream, self.epoch, current)

    def _resume_slots(self, current: ReadSlot | None) -> list[ReadSlot] | None:
        """The reads a checkpoint taken now records, or None if now is not a point the
        function can resume from: inside ``current`` (or at the end, with None) while
        every other read it opened has ended, and not while re-executing towards an
        older checkpoint's point."""
        if self._resume_at is not None:
            return None
        slots = self._slots
        if current is None:
            return slots if all(slot.closed is not None for slot in slots) else None
        index = slots.index(current)
        # Reads opened after the current one and ended (a cursor per item) are part of
        # what the checkpointed cursor covers; resuming opens new ones.
        if any(slot.closed is None for slot in slots[:index] + slots[index + 1 :]):
            return None
        return slots[: index + 1]

    async def checkpoint(self, current: ReadSlot | None, *, turn: bool = True) -> None:
        """Flush, then save the reads' positions and cursors, the output head, state,
        effects position, start counter and epoch — if this is a point the function can
        resume from (see :meth:`_resume_slots`); otherwise only flush. ``turn``: as for
        :meth:`flush`."""
        if current is not None and not self._checkpointing:
            await self.flush(turn=turn)  # replay mode records only where its function ended
            return
        early = self._checkpoint_before_flush
        if not early:
            await self.flush(turn=turn)
        slots = self._resume_slots(current)
        if slots is None:
            if early:
                await self.flush(turn=turn)
            return
        try:
            await self._write_checkpoint(
                {
                    "positions": [slot.to_meta() for slot in slots],
                    "out": self._out_seq + (len(self._buffer) if early else 0),
                    "state": self.state,
                    "effects": self._effect_position,
                    "calls": self._calls,
                    "epoch": self.epoch,
                    # Taken after the function returned: recovery only seals the output.
                    "returned": self._returned,
                }
            )
        except EncodeError:
            # The store encodes the value once, as it writes it (nothing is written if
            # that fails); only then is the state encoded again, for an error that names
            # the function and where in ctx.state the culprit sits.
            try:
                codec.pack(self.state, what="ctx.state")
            except EncodeError as error:
                raise EncodeError(error.type_name, f"{self.function!r}'s {error.path}") from None
            raise
        if early:
            await self.flush(turn=turn)
        self._arm_checkpoint_timer()
        await self._trim_inputs([slot.stream for slot in slots])

    async def _write_checkpoint(self, value: dict[str, Any]) -> None:
        """Store ``value`` as this execution's checkpoint unless a newer epoch wrote one
        (then raise :class:`FencedError`).

        Once this execution has written the checkpoint at some version, a compare-and-set
        on that version is the whole write: it succeeds only if nobody wrote since, and
        then the stored value is ours, whose epoch cannot fence us. So the previous
        checkpoint (its whole ctx.state) is neither read nor decoded again. A lost race
        (another owner wrote, or a write whose outcome was unknown landed) falls back to
        reading the current value and checking its epoch.
        """
        store = self.store
        version = self._checkpoint_version
        if version is not None:
            written = await store.meta_cas("checkpoints", self.execution, value, version=version)
            if written is not None:
                self._checkpoint_version = written
                self._durable = value
                return
            self._checkpoint_version = None

        def fenced(current: Any) -> Any:
            if current is not None and current["epoch"] > self.epoch and not self.unfenced:
                raise FencedError(f"checkpoint of {self.execution}", self.epoch, current["epoch"])
            return value

        entry = await store.meta_update("checkpoints", self.execution, fenced)
        assert entry is not None
        self._checkpoint_version = entry.version
        self._durable = value

    async def _trim_inputs(self, streams: list[str]) -> None:
        """Once a checkpoint or the end made this reader's progress durable, delete what
        every reader of its ephemeral inputs has passed (perper/runtime/retention.py)."""
        if not streams:
            return
        if self._retention is None:
            self._retention = Retention(self.store, self.worker.app)
        await self._retention.trim_passed(streams)

    async def _set_status(self, status: Status, error: str | None = None) -> None:

        def update(value: Any) -> Any:
            current = ExecutionRecord.from_meta(value) if value is not None else self.record
            if current.status == Status.CANCELLED:
                return KEEP  # destroyed (ctx.destroy, perper streams rm) while it ran
            return current.with_status(status, error).to_meta()

        stored = await self.store.meta_update("executions", self.execution, update)
        assert stored is not None
        self.record = ExecutionRecord.from_meta(stored.value)

    # ------------------------------------------------------- the Context host

    async def _reach(self, index: int, restored: ReadSlot) -> None:
        """Re-executing after a restore, the function opened read ``index`` again: check
        it got there as it did the first time, then move its cursor to where the read
        ended (a finished read) or to the checkpointed point (the resumed read)."""
        now = self.cursor()
        if now != restored.opened:
            what = "items, effects and ctx.start calls before ctx.read #" + str(index)
            raise NondeterminismError(
                execution=self.execution,
                function=self.function,
                seq=now[0],
                stored=restored.opened,
                new=now,
                what=f"count of {what} (on resuming from its checkpoint)",
            )
        await self.flush()  # re-yielded items land at the seqs they were first written at
        assert self._resume_at is not None
        if restored.closed is not None:
            self._out_seq, self._effect_position, self._calls = restored.closed
        else:
            self._out_seq, self._effect_position, self._calls = self._resume_at
            self._resume_at = None

    def read(self, stream: str, start: int | str = 0, with_seq: bool = False) -> AsyncIterator[Any]:
        """Iterate over ``stream`` for the function (``ctx.read``), from ``start`` (a seq,
        or ``"live"``: the head now, recorded as an effect), yielding ``(seq, item)`` if
        ``with_seq``.

        A function leaving the loop early (``break``) drops the iterator; a weak
        reference notices that at once — before the function yields anything else — and
        records where the read ended (asyncio closes the generator itself only later).
        """
        holder: list[ReadSlot] = []
        reader = self._read(stream, holder, self._live_start(stream, start), with_seq, False)
        weak = weakref.ref(reader, lambda _: self._left(holder))
        self._readers.append(weak)
        return reader

    def read_batches(
        self, stream: str, start: int | str = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]:
        """Iterate over ``stream`` a stored segment at a time (``ctx.read_batches``):
        lists of items, or ``(first_seq, items)`` if ``with_seq``. The same read slot as
        :meth:`read`, whose position moves by a whole batch: the function asking for the
        next batch is the boundary (a checkpoint, a stop, a crash point), so recovery
        resumes at the start of the batch after the last one it finished."""
        holder: list[ReadSlot] = []
        reader = self._read(stream, holder, self._live_start(stream, start), with_seq, True)
        weak = weakref.ref(reader, lambda _: self._left(holder))
        self._readers.append(weak)
        return reader

    def _left(self, holder: list[ReadSlot]) -> None:
        if holder and holder[0].closed is None:
            holder[0].closed = self.cursor()

    async def _read(
        self,
        stream: str,
        holder: list[ReadSlot],
        start: int | asyncio.Task[int],
        with_seq: bool,
        batches: bool,
    ) -> AsyncIterator[Any]:
        store = self.store
        if self._undeclared:
            await self._declare_indexes()
        index = self._reads
        self._reads += 1
        restored = self._restored[index] if index < len(self._restored) else None
        if restored is not None and restored.stream != stream:
            raise NondeterminismError(
                execution=self.execution,
                function=self.function,
                seq=index,
                stored=f"ctx.read({restored.stream!r})",
                new=f"ctx.read({stream!r})",
                what="read (on resuming from its checkpoint)",
            )
        if restored is not None and self._resume_at is not None:
            await self._reach(index, restored)
        if restored is None:
            opened = self.cursor()
            first = start if isinstance(start, int) else await start
            slot = ReadSlot(stream, first, opened)
        else:
            slot = ReadSlot(stream, restored.position, restored.opened, restored.closed)
        self._slots.append(slot)
        holder.append(slot)
        if slot.closed is not None:
            return  # it had ended before the checkpoint: its loop ran for all its items
        position = slot.position
        self._at(Boundary.READ_START, position)
        worker = self.worker
        wake = self._wake
        try:
            while True:
                # One head read per pass: the pass reads up to it (segments() then needs
                # no head read of its own) and the next pass looks for more.
                info = store.info_now(stream)
                if info is None:
                    info = await store.info(stream)
                head = info.head
                if head > position:
                    # A segment at a time by a plain call where the store can
                    # (LogStore.segment_now), else through its async generator.
                    segments = None
                    while True:
                        if segments is None:
                            if position >= head:
                                break
                            got = store.segment_now(stream, position, head)
                            if got is None:
                                segments = store.read_batches(stream, start=position, stop=head)
                                continue
                        else:
                            got = await anext(segments, None)
                            if got is None:
                                break
                        first, items = got
                        if batches:
                            # One stored segment (from the read position on) per batch:
                            # what the log holds, so recovery and replay see the same
                            # batches.
                            position += len(items)
                            slot.position = position
                            yield (first, items) if with_seq else items
                            self._countdown -= len(items)
                            if self._countdown <= 0 or wake:
                                await self._boundary(slot)
                            continue
                        # The items are decoded already: hand them over in runs that end
                        # where the countdown does, with nothing per item but the yield
                        # and a look at ``wake`` (which timers and stops fill). The slot
                        # derives its position from the run's iterator.
                        count = len(items)
                        done = 0
                        while done < count:
                            size = min(max(self._countdown, 1), count - done)
                            run = iter(items if size == count else items[done : done + size])
                            # The slot's position is derived from the run until it is set.
                            slot._end = first + done + size
                            slot._run = run
                            if with_seq:
                                seq = first + done
                                for item in run:
                                    yield (seq, item)
                                    seq += 1
                                    if wake:
                                        break
                            else:
                                for item in run:
                                    yield item
                                    # The function asks for the next item: it has
                                    # finished with this one, so its state and outputs
                                    # are consistent with the positions.
                                    if wake:
                                        break
                            handed = size - operator.length_hint(run)
                            done += handed
                            position = first + done
                            slot._end = position  # slot.position = position, inline
                            slot._run = None
                            self._countdown -= handed
                            if self._countdown <= 0 or wake:
                                await self._boundary(slot)
                    continue
                if info.sealed:
                    break
                # About to block: make our own output visible first, or a cycle would
                # stall.
                if self._checkpointing and self._consumed_since_checkpoint() > 0:
                    await self.checkpoint(slot, turn=False)
                elif self._buffer or self._pending_effects or self._live_heads or self._flushing:
                    await self.flush(turn=False)
                if worker.stopping:
                    await self._stop(slot)
                self.blocked = True
                try:
                    future = store.write_waiter(stream, position)
                    if future is None:
                        await self._wait(stream, position)
                    elif not future.done():
                        # _wait on a store that hands out write waiters: one future and
                        # no timer per wait (inline: no coroutine per wait either). The
                        # read_wait_warning comes from one timer per execution, re-armed
                        # only when it finds the read it was armed for over.
                        loop = asyncio.get_running_loop()
                        self._waiting = (stream, position, loop.time())
                        if self._wait_watch is None:
                            self._wait_watch = loop.call_later(
                                self.settings.read_wait_warning, self._check_wait
                            )
                        try:
                            await future
                        except asyncio.CancelledError:
                            store.drop_waiter(stream, future)
                            raise
                        finally:
                            self._waiting = None
                finally:
                    self.blocked = False
        except GeneratorExit:
            # Closed by aclose(): where the function left the loop is known already if
            # it dropped the iterator (see read), else it is now.
            if slot.closed is None:
                slot.closed = self.cursor()
            raise
        slot.closed = self.cursor()

    async def _wait(self, stream: str, position: int) -> None:
        """Wait for item ``position`` of ``stream``; after ``read_wait_warning`` seconds
        say what is awaited if no execution writes the stream (it may be an ingest
        stream a producer fills later, so keep waiting)."""
        if await self.store.wait(stream, position, timeout=self.settings.read_wait_warning):
            return
        await self._say_waiting(stream, position)
        await self.store.wait(stream, position, timeout=None)

    def _check_wait(self) -> None:
        self._wait_watch = None
        waiting = self._waiting
        if waiting is None:
            return  # not waiting: the next wait arms it again
        stream, position, since = waiting
        loop = asyncio.get_running_loop()
        due = since + self.settings.read_wait_warning
        if loop.time() < due:
            self._wait_watch = loop.call_at(due, self._check_wait)
            return
        # Once per wait, as _wait does: the same read goes on waiting unwarned.
        self._waiting = (stream, position, math.inf)
        self._wait_warning = loop.create_task(self._warn_waiting(stream, position))

    async def _warn_waiting(self, stream: str, position: int) -> None:
        try:
            await self._say_waiting(stream, position)
        except Exception as error:  # a warning that cannot be given is not the read's failure
            log.debug("execution %s: no wait warning: %s", self.execution, error)

    async def _say_waiting(self, stream: str, position: int) -> None:
        if await self.store.meta_get("executions", stream) is None:
            info = await self.store.info(stream)
            log.warning(
                "execution %s has waited %gs for item %d of stream %r, which no execution "
                "writes%s; it goes on waiting for a producer to append to it (perper "
                "ingest, perper.Producer)",
                self.execution,
                self.settings.read_wait_warning,
                position,
                stream,
                " and no producer has written to" if info.head == 0 else "",
            )

    def _live_start(self, stream: str, start: int | str) -> int | asyncio.Task[int]:
        """Where a read given ``start`` begins: a seq, or for ``"live"`` the head of
        ``stream`` at this ``ctx.read`` call, a recorded effect taken at the call (so
        items appended between the call and the first item are read).

        Recorded (recovery): the seq itself. New: the effect's place is taken now and a
        task reads the head at once; the read and :meth:`flush` (which must not record
        the effect without its value) wait for it.
        """
        if start != "live":
            return int(start)
        if self._effect_position < len(self._recorded_effects):
            return int(self.effect("live", lambda: None))
        self.effect("live", lambda: None)
        entry = self._pending_effects[-1]

        async def head() -> int:
            entry[1] = value = await self.store.head(stream)
            return value

        task = asyncio.get_running_loop().create_task(head())
        self._live_heads.append(task)
        return task

    # ------------------------------------------------------------ queries

    def declare_index(self, stream: str, spec: IndexSpec) -> None:
        """Declare ``stream``'s index (``ctx.ingest(name, index=...)``) before this
        execution next reads or queries."""
        self._undeclared.append((stream, spec))

    async def _declare_indexes(self) -> None:
        while self._undeclared:
            stream, spec = self._undeclared[0]
            await self.store.declare_index(stream, spec)
            del self._undeclared[0]

    async def query(
        self,
        stream: str,
        where: str,
        params: Sequence[Any],
        order_by: str,
        limit: int | None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """``ctx.query``: the matching items of ``[start, stop)``, ``stop`` being the
        stream's head when first asked and ``start`` where what it keeps begins
        (:meth:`_query_start`); both a recorded effect, so recovery and replay see the same
        rows (or a ``TrimmedError``, never fewer rows)."""
        if self._undeclared:
            await self._declare_indexes()
        if self._effect_position < len(self._recorded_effects):
            start, stop = query_range(self.effect("query", lambda: None))
        else:
            first = await self._query_start(stream)
            head = await self.store.head(stream)
            recorded = query_effect(min(first, head), head)
            start, stop = query_range(self.effect("query", lambda: recorded))
        async for row in self.store.query(
            stream, where, params, stop=stop, order_by=order_by, limit=limit, start=start
        ):
            yield row

    async def _query_start(self, stream: str) -> int:
        """Where a new query of ``stream`` starts: its first stored seq, and for an
        ephemeral stream this checkpoint-mode execution reads, no lower than what its last
        checkpoint lets a trim delete (docs/retention.md): recovery re-runs the query only
        while that checkpoint is its last, and until then every item from there on stays."""
        first = await self.store.first_seq(stream)
        if self._checkpointing and self._durable is not None:
            if self._retention is None:
                self._retention = Retention(self.store, self.worker.app)
            if await self._retention.is_ephemeral(stream):
                first = max(first, checkpoint_needs(self._durable, stream))
        return first

    async def _boundary(self, slot: ReadSlot) -> None:
        self._at(Boundary.ITEM, slot.position)
        if self.worker.stopping:
            await self._stop(slot)
        if self._checkpointing and (
            self._checkpoint_due or self._consumed_since_checkpoint() >= self._every
        ):
            await self.checkpoint(slot)
        self._wake.clear()
        self._reset_countdown()

    def _consumed_total(self) -> int:
        total: int = sum(slot.position for slot in self._slots)
        return total

    def _consumed_since_checkpoint(self) -> int:
        return self._consumed_total() - self._checkpointed_total

    def _reset_countdown(self) -> None:
        if self.hooks.on_boundary is not None or self.worker.stopping:
            self._countdown = 1
        elif self._checkpointing:
            self._countdown = max(self._every - self._consumed_since_checkpoint(), 1)
        else:
            self._countdown = 1 << 30

    def interrupt(self) -> None:
        """Make the function stop at its next item boundary (graceful shutdown)."""
        self._countdown = 0
        self._wake.append(None)

    async def _stop(self, slot: ReadSlot) -> None:
        await self.checkpoint(slot)
        raise Stopped()

    async def destroy(self, stream: str) -> None:
        """Cancel the writer of ``stream`` and delete it (``ctx.destroy``); idempotent, so
        a re-run of this function destroys nothing twice."""
        await cancel_writer(self.store, stream)
        await self.worker.stop_execution(stream)
        with contextlib.suppress(ConfigError):
            await destroy_stream(self.store, stream, force=True)

    def reserve_call(self, fn: StreamFunction) -> StreamRef:
        stream = child_stream(self.worker.app, self.function, fn, self._prefix, self._calls)
        self._calls += 1
        return StreamRef(stream)

    async def start_reserved(
        self, ref: StreamRef, fn: StreamFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StreamRef:
        params = self.worker.pack_params(fn, fn.bind(args, kwargs))
        await self.worker.attach(ref.stream, self.run, fn, params, parent=self.execution)
        return ref

    def effect(self, kind: str, make: Callable[[], Any]) -> Any:
        position = self._effect_position
        self._effect_position = position + 1
        if position < len(self._recorded_effects):
            recorded_kind, value = self._recorded_effects[position]
            if recorded_kind != kind:
                raise NondeterminismError(
                    execution=self.execution,
                    function=self.function,
                    seq=position,
                    stored=f"ctx.{recorded_kind}()",
                    new=f"ctx.{kind}()",
                    what="effect",
                )
            return value
        value = make()
        self._pending_effects.append([kind, value])
        return value

    def entropy_bytes(self, count: int) -> bytes:
        return self.worker.entropy.randbytes(count)

    def entropy_float(self) -> float:
        return self.worker.entropy.random()

    def wall_clock(self) -> float:
        return self.worker.clock()

    def caller(self) -> Caller:
        """Calls, agents and agent state for this execution (:mod:`perper.runtime.calls`)."""
        if self._caller is None:
            self._caller = ExecutionCalls(self)
        return self._caller
