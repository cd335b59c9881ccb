"""``check_recoverable``: crash a function at every boundary and compare its output.

A function declared ``recovery="checkpoint"`` resumes from its last checkpoint after a
crash, with ``ctx.state`` restored and its inputs resumed — so any memory it keeps in
local variables is lost. This harness proves a function safe for its declared mode: it
runs it once uncrashed, then once per crash point with a crash injected there (the
lease stays held, as after kill -9), recovers it with a fresh worker, and compares the
final output with the uncrashed one. The crash points are every
:class:`~perper.runtime.settings.Boundary` the uncrashed run passed: before each read's
first item (after what the function yielded before it), after every input item
(including the last, before the code after the input loop), after the function returned
(between its last yield and the seal) and after the seal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perper.app import StreamFunction
from perper.batch import Batch
from perper.diff import structural_diff
from perper.errors import ConfigError, ExecutionFailedError
from perper.errors import RecoveryError as RecoveryError  # re-exported
from perper.runtime.engine import Runtime
from perper.runtime.leases import Lease
from perper.runtime.settings import Boundary, RuntimeHooks, RuntimeSettings
from perper.store.base import LogStore
from perper.store.memory import MemoryStore
from perper.streamref import StreamRef
from perper.testing.clock import EPOCH, ItemClock, TimeSchedule

_RUN = "check"


class _Crash(BaseException):
    """A simulated kill -9 inside an execution."""


@dataclass(frozen=True)
class RecoveryDivergence:
    """Where a recovered run first differed from the uncrashed one.

    Attributes:
        boundary: the crash point's number (1 is the first point the run passed).
        where: the crash point in words, e.g. ``after input item 3``.
        seq: the first output seq that differs.
        expected: the uncrashed output at ``seq`` (None if the recovered one is longer).
        actual: the recovered output at ``seq`` (None if it is shorter).
        error: the recovered execution's error, if it failed (e.g. NondeterminismError).
    """

    boundary: int
    where: str
    seq: int | None
    expected: Any
    actual: Any
    error: str | None = None

    def __str__(self) -> str:
        if self.error is not None and self.seq is None:
            return f"crashed {self.where}, recovery failed:\n{self.error}"
        lines = [
            f"crashed {self.where}: output seq {self.seq} differs",
            f"  expected: {self.expected!r}",
            f"  actual:   {self.actual!r}",
        ]
        lines.extend("  " + line for line in structural_diff(self.expected, self.actual))
        if self.error:
            lines.append("  recovery failed: " + self.error.strip().splitlines()[-1])
        return "\n".join(lines)


@dataclass(frozen=True)
class RecoveryCheck:
    """The result of :func:`check_recoverable`.

    Attributes:
        function: the function's name.
        recovery: its declared recovery mode.
        boundaries: how many crash points were tried (up to the first divergence).
        output_items: the uncrashed output's length.
        divergence: the first crash point whose recovered output differs, or None.
    """

    function: str
    recovery: str
    boundaries: int
    output_items: int
    divergence: RecoveryDivergence | None

    @property
    def ok(self) -> bool:
        return self.divergence is None

    def raise_on_failure(self) -> None:
        """Raise :class:`RecoveryError` describing the divergence, if any."""
        if self.divergence is not None:
            raise RecoveryError(str(self))

    def __str__(self) -> str:
        head = (
            f"{self.function} (recovery={self.recovery!r}): {self.boundaries} crash points, "
            f"{self.output_items} output items"
        )
        if self.divergence is None:
            return head + ": every recovery reproduced the uncrashed output"
        return (
            head + f": not recoverable in {self.recovery!r} mode\n{self.divergence}\n"
            "  keep all memory between items in ctx.state and take time and randomness from "
            "ctx.now()/ctx.random(), or declare recovery='replay'"
        )


def check_recoverable(
    fn: StreamFunction,
    inputs: Mapping[str, Sequence[Any]] | Sequence[Any],
    *,
    raise_on_failure: bool = False,
    time_schedule: TimeSchedule | None = None,
    **params: Any,
) -> RecoveryCheck:
    """Crash ``fn`` at every boundary, recover it in its declared mode, and compare.

    The crash points: before each read's first item, after every input item, after the
    function returned but before its output was sealed, and after the seal.

    Args:
        fn: a function registered with ``@app.stream`` or ``@app.action``.
        inputs: the items of each input stream, by parameter name; a plain sequence when
            the function has exactly one parameter not given in ``params``. A stream is
            stored as one segment, or, where it holds :class:`perper.Batch` values, as
            a segment per Batch (and per run of plain items between them): what
            ``ctx.read_batches`` then hands out batch by batch.
        raise_on_failure: raise :class:`RecoveryError` instead of returning a failed result.
        time_schedule: what ``ctx.now()`` reads per input item (see
            :class:`perper.testing.clock.ItemClock`); a recovery resumes the schedule at
            the item its checkpoint resumes at. Default: a clock standing still.
        **params: the function's other parameters.

    Returns:
        A :class:`RecoveryCheck` naming the first crash point whose output differs.

    Raises:
        ConfigError: bad arguments, or the function fails even without a crash.
    """
    if time_schedule is not None:
        ItemClock(time_schedule)  # bad schedules fail here, before any run
    check = asyncio.run(_check(fn, input_map(fn, inputs, params), params, time_schedule))
    if raise_on_failure:
        check.raise_on_failure()
    return check


def input_map(
    fn: StreamFunction,
    inputs: Mapping[str, Sequence[Any]] | Sequence[Any],
    params: Mapping[str, Any],
    *,
    caller: str = "check_recoverable",
) -> dict[str, list[Any]]:
    """The items of each input stream by parameter name (shared by the harnesses).

    Raises:
        ConfigError: ``fn`` is not a stream function, or the inputs do not name
            parameters it has (a plain sequence needs exactly one free parameter).
    """
    if not isinstance(fn, StreamFunction):
        raise ConfigError(f"{caller}({fn!r}): pass a function decorated with @app.stream")
    if isinstance(inputs, Mapping):
        mapped = {name: list(items) for name, items in inputs.items()}
    else:
        free = [name for name in fn.signature.parameters if name not in params]
        if len(free) != 1:
            raise ConfigError(
                f"{caller}({fn.name}): name the input streams, e.g. "
                f"inputs={{'{free[0] if free else 'source'}': [...]}} (free parameters: {free})"
            )
        mapped = {free[0]: list(inputs)}
    for name in mapped:
        if name not in fn.signature.parameters:
            raise ConfigError(f"{caller}({fn.name}): it has no parameter {name!r}")
    return mapped


def _segments(items: list[Any]) -> list[list[Any]]:
    """The segments an input is stored as: one per Batch and per run of other items."""
    segments: list[list[Any]] = []
    run: list[Any] = []
    for item in items:
        if isinstance(item, Batch):
            if run:
                segments.append(run)
                run = []
            if item.items:
                segments.append(list(item.items))
        else:
            run.append(item)
    if run or not segments:
        segments.append(run)
    return segments


async def stage_execution(
    runtime: Runtime,
    fn: StreamFunction,
    inputs: Mapping[str, list[Any]],
    params: Mapping[str, Any],
    run: str,
) -> str:
    """Write each input as a sealed stream of ``run`` in ``runtime``'s store and record
    one execution of ``fn`` over them (with ``params``); return its id. The test
    harnesses' common setup."""
    store = runtime.store
    refs: dict[str, StreamRef] = {}
    for name, items in inputs.items():
        stream = f"{run}/input-{name}"
        seq = 0
        for segment in _segments(items):
            await store.append(stream, seq, segment)
            seq += len(segment)
        await store.seal(stream)
        refs[name] = StreamRef(stream)
    execution = f"{run}/{fn.name}-0"
    packed = runtime.pack_params(fn, fn.bind((), {**params, **refs}))
    await runtime.create_execution(execution, run, fn, packed, parent=None)
    return execution


async def _fresh(
    fn: StreamFunction, inputs: dict[str, list[Any]], params: dict[str, Any]
) -> tuple[LogStore, str]:
    store = MemoryStore()
    setup = _runtime(store, fn, "setup", _hooks())
    return store, await stage_execution(setup, fn, inputs, params, _RUN)


#: Checkpoint at every item, and hold the whole output in one batch, so every crash
#: point has a checkpoint right before it and nothing but the checkpoint flushes.
_SETTINGS = RuntimeSettings(batch_size=1000, checkpoint_every=1)


def _runtime(
    store: LogStore,
    fn: StreamFunction,
    worker: str,
    hooks: RuntimeHooks,
    clock: ItemClock | None = None,
) -> Runtime:
    return Runtime(
        store,
        fn.app,
        settings=_SETTINGS,
        hooks=hooks,
        clock=clock if clock is not None else (lambda: EPOCH),
        entropy=random.Random(0),
        worker_id=worker,
    )


def _hooks(on_boundary: Callable[[str, Boundary, int], None] | None = None) -> RuntimeHooks:
    return RuntimeHooks(on_boundary=on_boundary, force_checkpoint_every=1)


def _clock(schedule: TimeSchedule | None, consumed: int = 0) -> ItemClock | None:
    return None if schedule is None else ItemClock(schedule, consumed=consumed)


def _both(
    first: Callable[[str, Boundary, int], None], clock: ItemClock | None
) -> Callable[[str, Boundary, int], None]:
    """``first``, then the clock's item count (when there is a clock)."""
    if clock is None:
        return first

    def both(execution: str, boundary: Boundary, count: int) -> None:
        first(execution, boundary, count)
        clock.on_boundary(execution, boundary, count)

    return both


class _Points:
    """Names the crash points of a run in the order it passes them."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._reads = 0
        self._items = 0

    def __call__(self, _: str, boundary: Boundary, count: int) -> None:
        if boundary is Boundary.READ_START:
            self._reads += 1
            self.names.append(f"before the first item of ctx.read #{self._reads}")
        elif boundary is Boundary.ITEM:
            self._items += 1
            self.names.append(f"after input item {self._items}")
        elif boundary is Boundary.FINISHED:
            self.names.append("after the function returned, before its output was sealed")
        else:
            self.names.append("after its output was sealed, before it was marked done")


async def _output(store: LogStore, execution: str) -> list[Any]:
    return [item async for _, item in store.read(execution)]


async def _check(
    fn: StreamFunction,
    inputs: dict[str, list[Any]],
    params: dict[str, Any],
    schedule: TimeSchedule | None = None,
) -> RecoveryCheck:
    store, execution = await _fresh(fn, inputs, params)
    points = _Points()
    clock = _clock(schedule)
    try:
        reference = _runtime(store, fn, "reference", _hooks(_both(points, clock)), clock)
        await reference.execute(execution)
    except ExecutionFailedError as error:
        raise ConfigError(
            f"check_recoverable({fn.name}): the function fails without any crash:\n{error.error}"
        ) from None
    expected = await _output(store, execution)
    for boundary, where in enumerate(points.names, start=1):
        divergence = await _crash_and_recover(
            fn, inputs, params, boundary, where, expected, schedule
        )
        if divergence is not None:
            return RecoveryCheck(fn.name, fn.recovery, boundary, len(expected), divergence)
    return RecoveryCheck(fn.name, fn.recovery, len(points.names), len(expected), None)


async def _crash_and_recover(
    fn: StreamFunction,
    inputs: dict[str, list[Any]],
    params: dict[str, Any],
    boundary: int,
    where: str,
    expected: list[Any],
    schedule: TimeSchedule | None = None,
) -> RecoveryDivergence | None:
    store, execution = await _fresh(fn, inputs, params)
    seen = 0
    clock = _clock(schedule)

    def crash_at_boundary(_: str, __: Boundary, ___: int) -> None:
        nonlocal seen
        seen += 1
        if seen == boundary:
            raise _Crash()

    crashing = _runtime(store, fn, "crashing", _hooks(_both(crash_at_boundary, clock)), clock)
    with contextlib.suppress(_Crash):
        await crashing.execute(execution)
    # The crashed worker never renews again: its lease expires, and the next claim
    # bumps the epoch (fencing it) exactly as after a real expiry.
    entry = await store.meta_get("leases", execution)
    assert entry is not None
    held = Lease.from_meta(entry.value)
    await store.meta_cas(
        "leases", execution, Lease(None, held.epoch).to_meta(), version=entry.version
    )
    error: str | None = None
    checkpoint = await store.meta_get("checkpoints", execution)
    resumed = sum(slot[1] for slot in checkpoint.value["positions"]) if checkpoint else 0
    resumed_clock = _clock(schedule, resumed)
    try:
        recovering = _runtime(
            store, fn, "recovering", _hooks(_both(lambda *_: None, resumed_clock)), resumed_clock
        )
        await recovering.execute(execution)
    except ExecutionFailedError as failed:
        error = failed.error
    actual = await _output(store, execution)
    for seq, (old, new) in enumerate(zip(expected, actual, strict=False)):
        if old != new:
            return RecoveryDivergence(boundary, where, seq, old, new, error)
    if len(actual) != len(expected):
        seq = min(len(actual), len(expected))
        return RecoveryDivergence(
            boundary,
            where,
            seq,
            expected[seq] if seq < len(expected) else None,
            actual[seq] if seq < len(actual) else None,
            error,
        )
    if error is not None:
        return RecoveryDivergence(boundary, where, None, None, None, error)
    return None
