"""What a replay returns: values (frozen dataclasses), printable, with ``raise_on_failure``.

Per execution a :class:`ReplayResult` says how many items were compared and whether the
replay was identical, diverged (the first :class:`Divergence`), could not be replayed
(``reason``) or was stopped on request (``--until``). :class:`ReplayResults` gathers them
with the exit code the ``perper replay`` command uses. A whole-run replay
(``--graph``) returns :class:`GraphReplayResults`, one :class:`StreamResult` per stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from perper import codec
from perper.errors import ReplayDivergedError as ReplayDivergedError  # re-exported
from perper.errors import ReplayError


class Outcome(StrEnum):
    """How the replay of one execution or stream ended."""

    IDENTICAL = "identical"
    DIVERGED = "diverged"
    UNREPLAYABLE = "unreplayable"
    STOPPED = "stopped"


IDENTICAL = Outcome.IDENTICAL
DIVERGED = Outcome.DIVERGED
UNREPLAYABLE = Outcome.UNREPLAYABLE
STOPPED = Outcome.STOPPED

#: Exit codes of ``perper replay`` (and :attr:`ReplayResults.exit_code`).
EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_UNREPLAYABLE = 2


class DivergenceKind(StrEnum):
    """What differed first between a recording and its replay."""

    ITEM = "item"  # a different item at a seq
    SHORTER = "shorter"  # the replay's output ended before the recorded one
    LONGER = "longer"  # the replay yielded items beyond the recorded output
    START = "start"  # a ctx.start the recording does not have (or lacks one it has)
    EFFECT = "effect"  # ctx.now/random/uuid asked in another order, or beyond the recording
    EXCEPTION = "exception"  # the function raised where the recording did not
    FAILURE = "failure"  # the recorded execution failed; the replay did not fail the same way
    INPUT = "input"  # the replay read an input past where the recording stopped reading
    MISSING_STREAM = "missing"  # (graph) a recorded stream the replayed run did not write
    EXTRA_STREAM = "extra"  # (graph) a stream the replayed run wrote that the recording lacks


ITEM = DivergenceKind.ITEM
SHORTER = DivergenceKind.SHORTER
LONGER = DivergenceKind.LONGER
START = DivergenceKind.START
EFFECT = DivergenceKind.EFFECT
EXCEPTION = DivergenceKind.EXCEPTION
FAILURE = DivergenceKind.FAILURE
MISSING_STREAM = DivergenceKind.MISSING_STREAM
EXTRA_STREAM = DivergenceKind.EXTRA_STREAM

_MAX_REPR = 300


def short_repr(value: Any, limit: int = _MAX_REPR) -> str:
    """``repr(value)``, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Divergence:
    """The first place where the replay differs from the recording.

    Attributes:
        kind: what differs: ``item``, ``shorter``, ``longer``, ``start``, ``effect``,
            ``exception`` or ``failure`` (and ``missing``/``extra`` streams in a graph replay).
        execution: the execution (also its output stream's name).
        function: the function's name.
        seq: the output seq for items; the call index for ``start``; the effect's position
            for ``effect``; the number of items yielded before an ``exception``.
        expected: the recorded value (None when the recording has nothing there).
        actual: the replayed value (None when the replay produced nothing there).
        diff: one line per structural difference between expected and actual.
        input_positions: per input stream, the items consumed when the divergent item was
            yielded (or the call/effect/exception happened).
        message: one sentence saying what happened.
        traceback: the replay's traceback, for ``exception``.
    """

    kind: DivergenceKind
    execution: str
    function: str
    seq: int
    expected: Any
    actual: Any
    diff: tuple[str, ...] = ()
    input_positions: dict[str, int] = field(default_factory=dict, hash=False)
    message: str = ""
    traceback: str | None = None

    def describe(self, indent: str = "  ") -> str:
        """A multi-line human description."""
        lines = [f"{self.message}"]
        label = {START: "start", EFFECT: "effect"}.get(self.kind, "seq")
        lines.append(f"{indent}function:  {self.function}")
        lines.append(f"{indent}execution: {self.execution}")
        lines.append(f"{indent}{label + ':':<10} {self.seq}")
        lines.append(f"{indent}expected:  {self._show(self.expected, LONGER, EXTRA_STREAM)}")
        lines.append(f"{indent}actual:    {self._show(self.actual, SHORTER, MISSING_STREAM)}")
        if self.diff:
            lines.append(f"{indent}diff:")
            lines.extend(f"{indent}  {line}" for line in self.diff)
        if self.input_positions:
            positions = ", ".join(f"{s} at {p}" for s, p in sorted(self.input_positions.items()))
            lines.append(f"{indent}inputs consumed: {positions}")
        if self.traceback:
            lines.append(f"{indent}traceback:")
            lines.extend(f"{indent}  {line}" for line in self.traceback.rstrip().splitlines())
        return "\n".join(lines)

    def _show(self, value: Any, *nothing_kinds: str) -> str:
        if self.kind in nothing_kinds:
            return "(nothing)"
        return short_repr(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "execution": self.execution,
            "function": self.function,
            "seq": self.seq,
            "expected": codec.to_jsonable(self.expected),
            "actual": codec.to_jsonable(self.actual),
            "diff": list(self.diff),
            "input_positions": dict(self.input_positions),
            "message": self.message,
            "traceback": self.traceback,
        }


@dataclass(frozen=True)
class ReplayResult:
    """The replay of one execution.

    Attributes:
        execution: the execution's id (also its output stream's name).
        function: the recorded function name.
        kind: the recorded kind (stream, action, launcher).
        recorded_status: the recorded execution's status (done, failed, running).
        outcome: ``identical``, ``diverged``, ``unreplayable`` or ``stopped``.
        items_compared: output items found identical.
        recorded_items: output items in the recording.
        items_read: input items the replay consumed (all inputs together).
        starts_compared: ``ctx.start`` calls found identical.
        effects_replayed: recorded effects (now, random, uuid) handed back.
        divergence: the first divergence, when ``outcome`` is ``diverged``.
        reason: why the execution cannot be replayed, when ``unreplayable``.
        stopped_before: the seq replay stopped before (``until``), when ``stopped``.
        notes: remarks that change no outcome (e.g. a reproduced recorded failure).
        seconds: time the replay took.
    """

    execution: str
    function: str
    kind: str
    recorded_status: str
    outcome: Outcome
    items_compared: int = 0
    recorded_items: int = 0
    items_read: int = 0
    starts_compared: int = 0
    effects_replayed: int = 0
    divergence: Divergence | None = None
    reason: str | None = None
    stopped_before: int | None = None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True if the recording was reproduced (up to ``stopped_before``, if stopped)."""
        return self.outcome in (IDENTICAL, STOPPED)

    def summary(self) -> str:
        """One line: what happened to this execution."""
        if self.outcome == IDENTICAL:
            return f"identical ({self._counts()})"
        if self.outcome == STOPPED:
            return f"stopped before seq {self.stopped_before} ({self._counts()})"
        if self.outcome == UNREPLAYABLE:
            return f"cannot replay: {self.reason}"
        assert self.divergence is not None
        return f"diverged ({self.divergence.kind}) at {self.divergence.seq}"

    def _counts(self) -> str:
        parts = [f"{self.items_compared} items"]
        if self.starts_compared:
            parts.append(f"{self.starts_compared} starts")
        if self.effects_replayed:
            parts.append(f"{self.effects_replayed} effects")
        if self.items_read:
            parts.append(f"{self.items_read} read")
        return ", ".join(parts)

    def describe(self) -> str:
        """A multi-line human description."""
        head = f"{self.execution} ({self.function}): {self.summary()}"
        lines = [head]
        if self.divergence is not None:
            lines.append("  " + self.divergence.describe("    "))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def raise_on_failure(self) -> None:
        """Raise :class:`ReplayError` if unreplayable, :class:`ReplayDivergedError` if diverged."""
        if self.outcome == UNREPLAYABLE:
            raise ReplayError(self.describe())
        if self.outcome == DIVERGED:
            raise ReplayDivergedError(self.describe(), self)

    def to_json(self) -> dict[str, Any]:
        return {
            "execution": self.execution,
            "function": self.function,
            "kind": self.kind,
            "recorded_status": self.recorded_status,
            "outcome": self.outcome,
            "ok": self.ok,
            "items_compared": self.items_compared,
            "recorded_items": self.recorded_items,
            "items_read": self.items_read,
            "starts_compared": self.starts_compared,
            "effects_replayed": self.effects_replayed,
            "divergence": self.divergence.to_json() if self.divergence else None,
            "reason": self.reason,
            "stopped_before": self.stopped_before,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 6),
        }


def _exit_code(outcomes: list[str]) -> int:
    # "Cannot replay" wins over "diverged": the verdict on the log is incomplete.
    if UNREPLAYABLE in outcomes:
        return EXIT_UNREPLAYABLE
    if DIVERGED in outcomes:
        return EXIT_DIVERGED
    return EXIT_OK


@dataclass(frozen=True)
class ReplayResults:
    """The replay of the selected executions of a log.

    Attributes:
        log: the log's URL.
        app: the app's name.
        results: one per replayed execution, in start order.
        notes: remarks about the whole replay (e.g. the clock could not be frozen).
    """

    log: str
    app: str
    results: tuple[ReplayResult, ...]
    notes: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[ReplayResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, execution: str) -> ReplayResult:
        for result in self.results:
            if result.execution == execution:
                return result
        raise KeyError(execution)

    @property
    def ok(self) -> bool:
        """True if every replayed execution reproduced its recording."""
        return all(result.ok for result in self.results)

    @property
    def exit_code(self) -> int:
        """0 all reproduced, 1 a divergence, 2 an execution cannot be replayed."""
        return _exit_code([result.outcome for result in self.results])

    @property
    def divergences(self) -> tuple[Divergence, ...]:
        return tuple(r.divergence for r in self.results if r.divergence is not None)

    @property
    def failures(self) -> tuple[ReplayResult, ...]:
        """The results that are not ok (diverged or unreplayable)."""
        return tuple(r for r in self.results if not r.ok)

    def describe(self) -> str:
        """A multi-line human description: a line per execution, then the failures."""
        compared = sum(r.items_compared for r in self.results)
        count = len(self.results)
        lines = [
            f"replay of {self.log} with app {self.app!r}: {count} execution"
            f"{'' if count == 1 else 's'}, {compared} items compared"
        ]
        for result in self.results:
            lines.append(f"  {result.execution} ({result.function}): {result.summary()}")
        for result in self.results:
            if result.divergence is not None:
                lines.append(result.describe())
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    __str__ = describe

    def raise_on_failure(self) -> None:
        """Raise :class:`ReplayError` when an execution cannot be replayed, else
        :class:`ReplayDivergedError` when one diverged; return when all reproduced."""
        _raise_for(self.exit_code, self)

    def to_json(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "app": self.app,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "items_compared": sum(r.items_compared for r in self.results),
            "executions": [result.to_json() for result in self.results],
            "notes": list(self.notes),
        }


# --------------------------------------------------------------- graph replay


@dataclass(frozen=True)
class StreamResult:
    """One stream of a whole-run replay compared with its recording.

    Attributes:
        stream: the stream's name.
        function: the function writing it ('' for ingest streams, '#effects' for recorded
            effects).
        outcome: ``identical`` or ``diverged``.
        items_compared: items found identical.
        recorded_items: items in the recording.
        replayed_items: items the replayed run wrote.
        divergence: the first difference, when diverged.
    """

    stream: str
    function: str
    outcome: Outcome
    items_compared: int
    recorded_items: int
    replayed_items: int
    divergence: Divergence | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == IDENTICAL

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "function": self.function,
            "outcome": self.outcome,
            "items_compared": self.items_compared,
            "recorded_items": self.recorded_items,
            "replayed_items": self.replayed_items,
            "divergence": self.divergence.to_json() if self.divergence else None,
        }


@dataclass(frozen=True)
class RunFailure:
    """An execution that failed in the replayed run but not in the recording."""

    execution: str
    function: str
    error: str


@dataclass(frozen=True)
class RunReplayResult:
    """A whole run re-run from its ingest streams and launcher parameters.

    Attributes:
        run: the run's name.
        outcome: ``identical``, ``diverged`` or ``unreplayable``.
        streams: every stream of the run, recorded or replayed, compared.
        failures: executions that failed in the replay but not in the recording.
        reason: why the run cannot be replayed, when ``unreplayable``.
        notes: remarks (e.g. the run was stopped when it could make no more progress).
    """

    run: str
    outcome: Outcome
    streams: tuple[StreamResult, ...] = ()
    failures: tuple[RunFailure, ...] = ()
    reason: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == IDENTICAL

    def describe(self) -> str:
        if self.outcome == UNREPLAYABLE:
            return f"run {self.run}: cannot replay: {self.reason}"
        compared = sum(s.items_compared for s in self.streams)
        lines = [
            f"run {self.run}: {self.outcome} ({len(self.streams)} streams, "
            f"{compared} items compared)"
        ]
        for stream in self.streams:
            if stream.divergence is not None:
                lines.append(f"  {stream.stream}: {stream.outcome}")
                lines.append("    " + stream.divergence.describe("      "))
        for failure in self.failures:
            lines.append(f"  {failure.execution} ({failure.function}) failed:")
            lines.extend("    " + line for line in failure.error.rstrip().splitlines())
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "outcome": self.outcome,
            "ok": self.ok,
            "streams": [s.to_json() for s in self.streams],
            "failures": [
                {"execution": f.execution, "function": f.function, "error": f.error}
                for f in self.failures
            ],
            "reason": self.reason,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class GraphReplayResults:
    """Whole-run replays of the runs of a log."""

    log: str
    app: str
    runs: tuple[RunReplayResult, ...]
    notes: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[RunReplayResult]:
        return iter(self.runs)

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)

    @property
    def exit_code(self) -> int:
        return _exit_code([run.outcome for run in self.runs])

    def describe(self) -> str:
        lines = [f"whole-run replay of {self.log} with app {self.app!r}"]
        lines.extend(run.describe() for run in self.runs)
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    __str__ = describe

    def raise_on_failure(self) -> None:
        """Like :meth:`ReplayResults.raise_on_failure`."""
        _raise_for(self.exit_code, self)

    def to_json(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "app": self.app,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "runs": [run.to_json() for run in self.runs],
            "notes": list(self.notes),
        }


def _raise_for(code: int, results: ReplayResults | GraphReplayResults) -> None:
    if code == EXIT_UNREPLAYABLE:
        raise ReplayError(results.describe())
    if code == EXIT_DIVERGED:
        raise ReplayDivergedError(results.describe(), results)
