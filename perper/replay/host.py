"""The replay host: what stands behind ``ctx`` while an execution replays.

It satisfies :class:`perper.context.ExecutionHost` from the recording alone: inputs are
read from the recorded streams, effects are the recorded ones in order, and starts are
checked against the recorded executions instead of started. Nothing is written.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Sequence
from operator import length_hint
from typing import Any

from perper import codec
from perper.agents import Caller
from perper.app import App, Kind, StreamFunction
from perper.diff import structural_diff
from perper.errors import ConfigError, EncodeError
from perper.replay.clock import FrozenClock
from perper.replay.results import EFFECT, START, Divergence, DivergenceKind
from perper.runtime.records import ExecutionRecord, child_stream
from perper.runtime.retention import query_range
from perper.store.base import LogStore
from perper.store.index import IndexSpec
from perper.streamref import StreamRef


class ReplayStop(BaseException):
    """Unwinds the function being replayed.

    A BaseException so that ``except Exception`` in user code does not swallow it; the
    host also keeps what happened, so even a bare ``except:`` cannot hide it.
    """


class Diverged(ReplayStop):
    """The function did something the recording does not have (host.divergence)."""


class EndOfRecording(ReplayStop):
    """The function needs more than the recording holds: an input that was not finished
    when the log was taken, or an effect that was not yet recorded."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class _Cursor:
    """Where one ``ctx.read`` is: items consumed = first + len(items) - what is left.

    Computed on demand from the batch iterator, so reading costs nothing per item.
    """

    __slots__ = ("first", "items", "iterator", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.first = 0
        self.items: list[Any] = []
        self.iterator: Any = iter(())

    @property
    def position(self) -> int:
        return self.first + len(self.items) - length_hint(self.iterator)


class ReplayHost:
    """The :class:`~perper.context.ExecutionHost` of one execution under replay.

    Args:
        log: the recorded log (only read).
        app: the app whose code replays.
        record: the recorded execution.
        records: every recorded execution of the log, by id (to check starts).
        effects: the execution's recorded effects, ``[kind, value]`` pairs in order.
        complete: True if the recorded execution finished (done or failed): running out
            of recorded effects is then a divergence, not the end of the recording.
        clock: frozen for direct clock reads; moved to each replayed ``ctx.now()``.
    """

    def __init__(
        self,
        log: LogStore,
        app: App,
        record: ExecutionRecord,
        *,
        records: dict[str, ExecutionRecord],
        effects: list[Any],
        complete: bool,
        clock: FrozenClock,
    ) -> None:
        self.log = log
        self.app = app
        self.record = record
        self.execution = record.id
        self.run = record.run
        self.function = record.function
        self.state: dict[str, Any] = {}
        self.records = records
        self.effects = effects
        self.complete = complete
        self.clock = clock
        self.cursors: list[_Cursor] = []
        self.divergence: Divergence | None = None
        self.end_of_recording: str | None = None
        self.effect_position = 0
        self.starts_compared = 0
        self.started: set[str] = set()
        self._prefix = record.run if record.kind == Kind.LAUNCHER else record.id
        self._calls = 0
        self._call_index: dict[str, int] = {}
        self._entropy = random.Random(record.id)

    # --------------------------------------------------------------- reporting

    def positions(self) -> dict[str, int]:
        """Items consumed so far, per input stream (the furthest reader of each)."""
        positions: dict[str, int] = {}
        for cursor in self.cursors:
            position = cursor.position
            if position > positions.get(cursor.stream, -1):
                positions[cursor.stream] = position
        return positions

    def diverge(
        self,
        kind: DivergenceKind,
        seq: int,
        expected: Any,
        actual: Any,
        message: str,
        *,
        diff: list[str] | None = None,
    ) -> Diverged:
        """Record the first divergence and return the exception that unwinds the function."""
        if self.divergence is None:
            if diff is None:
                diff = structural_diff(expected, actual)
            self.divergence = Divergence(
                kind=kind,
                execution=self.execution,
                function=self.function,
                seq=seq,
                expected=expected,
                actual=actual,
                diff=tuple(diff),
                input_positions=self.positions(),
                message=message,
            )
        return Diverged(message)

    def end(self, what: str) -> EndOfRecording:
        if self.end_of_recording is None:
            self.end_of_recording = what
        return EndOfRecording(what)

    # ------------------------------------------------------- the Context host

    def _start(self, start: int | str) -> int:
        # "live" is the recorded head, taken at the ctx.read call as the runtime takes it;
        # a replay never makes a new effect (effect() ends or diverges first), so the 0 is
        # never used.
        return int(self.effect("live", lambda: 0)) if start == "live" else int(start)

    def read(self, stream: str, start: int | str = 0, with_seq: bool = False) -> AsyncIterator[Any]:
        return self._read(stream, self._start(start), with_seq)

    async def _read(self, stream: str, position: int, with_seq: bool) -> AsyncIterator[Any]:
        log = self.log
        cursor = _Cursor(stream)
        self.cursors.append(cursor)
        cursor.first = position
        while True:
            async for first, items in log.read_batches(stream, start=position):
                iterator = iter(items)
                cursor.first = first
                cursor.items = items
                cursor.iterator = iterator
                if with_seq:
                    for seq, item in enumerate(iterator, first):
                        yield seq, item
                else:
                    for item in iterator:
                        yield item
                position = first + len(items)
            info = await log.info(stream)
            if info.head > position:
                continue  # a live store grew meanwhile
            if info.sealed:
                return
            raise self.end(
                f"input {stream!r} ends at seq {position} in the log without being finished"
            )

    def read_batches(
        self, stream: str, start: int | str = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]:
        """The recorded stream a stored segment at a time, as the runtime hands it out;
        a batch counts as consumed once it is handed over."""
        return self._read_batches(stream, self._start(start), with_seq)

    async def _read_batches(self, stream: str, position: int, with_seq: bool) -> AsyncIterator[Any]:
        log = self.log
        cursor = _Cursor(stream)
        self.cursors.append(cursor)
        cursor.first = position
        while True:
            async for first, items in log.read_batches(stream, start=position):
                # Consumed as a whole when handed over (the function may change it).
                cursor.first = first + len(items)
                yield (first, items) if with_seq else items
                position = first + len(items)
            info = await log.info(stream)
            if info.head > position:
                continue
            if info.sealed:
                return
            raise self.end(
                f"input {stream!r} ends at seq {position} in the log without being finished"
            )

    async def destroy(self, stream: str) -> None:
        """``ctx.destroy`` in a replay: the recording holds what it did; nothing to do."""

    async def query(
        self,
        stream: str,
        where: str,
        params: Sequence[Any],
        order_by: str,
        limit: int | None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """``ctx.query`` over the log, as of the position the recording recorded."""
        # As for "live": a replay never makes a new effect, so the 0 is never used.
        start, stop = query_range(self.effect("query", lambda: 0))
        async for row in self.log.query(
            stream, where, params, stop=stop, order_by=order_by, limit=limit, start=start
        ):
            yield row

    def declare_index(self, stream: str, spec: IndexSpec) -> None:
        """The recording declared it; the log is read-only and holds its index rows."""

    def reserve_call(self, fn: StreamFunction) -> StreamRef:
        index = self._calls
        ref = StreamRef(child_stream(self.app, self.function, fn, self._prefix, index))
        self._calls += 1
        self._call_index[ref.stream] = index
        return ref

    async def start_reserved(
        self, ref: StreamRef, fn: StreamFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StreamRef:
        params = fn.bind(args, kwargs)
        try:
            packed = codec.pack(params, what="parameters")
        except EncodeError as error:
            raise ConfigError(f"cannot start {fn.name!r}: {error}") from error
        index = self._call_index.get(ref.stream, self._calls)
        recorded = self.records.get(ref.stream)
        actual = {"function": fn.name, "params": params}
        if recorded is None:
            raise self.diverge(
                START,
                index,
                None,
                actual,
                f"the replay started {fn.name} as {ref.stream!r}, which the recording never started",
                diff=[],
            )
        if recorded.function != fn.name or recorded.params != packed:
            expected = {"function": recorded.function, "params": codec.unpack(recorded.params)}
            raise self.diverge(
                START,
                index,
                expected,
                actual,
                f"the replay started {ref.stream!r} with another function or parameters "
                "than the recording",
                diff=structural_diff(expected, actual, path="start"),
            )
        self.started.add(ref.stream)
        self.starts_compared += 1
        return ref

    def effect(self, kind: str, make: Callable[[], Any]) -> Any:
        position = self.effect_position
        effects = self.effects
        if position < len(effects):
            recorded_kind, value = effects[position]
            if recorded_kind != kind:
                raise self.diverge(
                    EFFECT,
                    position,
                    f"ctx.{recorded_kind}()",
                    f"ctx.{kind}()",
                    f"the replay asked for ctx.{kind}() where the recording has "
                    f"ctx.{recorded_kind}() (effect {position})",
                    diff=[],
                )
            self.effect_position = position + 1
            if kind == "now":
                self.clock.move_to(float(value))
            return value
        if not self.complete:
            raise self.end(f"effect {position} (ctx.{kind}()) was not recorded yet")
        raise self.diverge(
            EFFECT,
            position,
            None,
            f"ctx.{kind}()",
            f"the replay asked for ctx.{kind}() beyond the {len(effects)} recorded effects",
            diff=[],
        )

    # Only ever called to make a new effect, which a replay never does; deterministic
    # all the same, so a replay cannot depend on when or where it runs.

    def entropy_bytes(self, count: int) -> bytes:
        return self._entropy.randbytes(count)

    def entropy_float(self) -> float:
        return self._entropy.random()

    def wall_clock(self) -> float:
        return 0.0

    def caller(self) -> Caller:
        from perper.replay.calls import ReplayCalls

        return ReplayCalls(self)
