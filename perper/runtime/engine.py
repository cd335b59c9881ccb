"""The runtime: runs every execution of a run as an asyncio task against a LogStore.

Simulator-friendly by construction: time comes from the event loop (``loop.time()`` for
flush deadlines and waits), wall-clock time and randomness only from the ``clock`` and
``entropy`` the caller passes (and only through recorded effects), the store from the
caller. No threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import traceback
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from perper import codec
from perper.app import App, Kind, StreamFunction
from perper.context import Context
from perper.diff import structural_diff
from perper.errors import (
    ConfigError,
    ConflictError,
    EncodeError,
    ExecutionFailedError,
    NondeterminismError,
    PerperError,
)
from perper.runtime.records import (
    DONE,
    EFFECTS_SUFFIX,
    FAILED,
    RUNNING,
    ExecutionRecord,
    RunRecord,
    check_run_name,
)
from perper.store.base import LogStore
from perper.streamref import StreamRef

log = logging.getLogger("perper.runtime")


@dataclass(frozen=True, slots=True)
class Failure:
    """An execution that failed, with its stored traceback."""

    execution: str
    function: str
    error: str


@dataclass(frozen=True)
class RunResult:
    """What :meth:`Runtime.run` returns.

    Attributes:
        run: the run's name.
        status: ``done`` or ``failed``.
        already_done: True if the run had finished before this call (nothing ran).
        failures: the executions that failed, first failure first.
    """

    run: str
    status: str
    already_done: bool = False
    failures: tuple[Failure, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == DONE

    def raise_on_failure(self) -> None:
        """Raise :class:`ExecutionFailedError` for the first failure, if any."""
        if self.failures:
            first = self.failures[0]
            raise ExecutionFailedError(first.execution, first.function, first.error)

    def __str__(self) -> str:
        if self.ok:
            return f"run {self.run!r} " + ("was already done" if self.already_done else "done")
        lines = [f"run {self.run!r} failed:"]
        for failure in self.failures:
            lines.append(f"  {failure.execution} ({failure.function}):")
            lines.extend("    " + line for line in failure.error.rstrip().splitlines())
        return "\n".join(lines)


class Runtime:
    """Runs the executions of a run in this process.

    Args:
        store: where streams and metadata live.
        app: the application whose functions run.
        clock: wall-clock source behind ``ctx.now()`` (default :func:`time.time`); only
            called when an effect is recorded for the first time.
        entropy: randomness behind ``ctx.random()``/``ctx.uuid()`` (default: seeded from
            the OS); only drawn when an effect is recorded for the first time.
        batch_size: output items buffered before they are appended as one segment.
        flush_delay: seconds of loop time a yielded item may wait in the buffer.
    """

    def __init__(
        self,
        store: LogStore,
        app: App,
        *,
        clock: Callable[[], float] | None = None,
        entropy: random.Random | None = None,
        batch_size: int = 1000,
        flush_delay: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be at least 1")
        self.store = store
        self.app = app
        self.clock = clock or time.time
        self.entropy = entropy or random.Random(os.urandom(16))
        self.batch_size = batch_size
        self.flush_delay = flush_delay
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failures: list[Failure] = []
        self._changed: asyncio.Event | None = None

    # -------------------------------------------------------------------- runs

    async def run(self, run: str, params: dict[str, Any] | None = None) -> RunResult:
        """Run (or resume) ``run`` until every finite execution is done or one fails.

        Re-running a finished run returns at once; re-running an unfinished one resumes
        it: the launcher runs again and re-attaches to the streams it started, and failed
        executions are retried. Items already stored are verified, never duplicated.

        Raises:
            ConfigError: bad run name or launcher parameters, or parameters that differ
                from the ones the run was started with.
        """
        check_run_name(run)
        launcher = self.app.launcher_function
        bound = launcher.bind((), dict(params or {}))
        packed = self._pack_params(launcher, bound)
        store = self.store
        entry = await store.meta_get("runs", run)
        if entry is not None:
            record = RunRecord.from_meta(entry.value)
            if record.app != self.app.name:
                raise ConfigError(
                    f"run {run!r} in {store.url} belongs to app {record.app!r}, not "
                    f"{self.app.name!r}: choose another --run name"
                )
            if record.params != packed:
                raise ConfigError(
                    f"run {run!r} was started with parameters {codec.unpack(record.params)!r}, "
                    f"not {bound!r}: resume it with the same parameters or choose another --run name"
                )
            if record.status == DONE:
                return RunResult(run, DONE, already_done=True)
        else:
            record = RunRecord(run, self.app.name, launcher.name, packed)
            await store.meta_cas("runs", run, record.to_meta(), version=0)

        for key, meta in await store.meta_scan("executions", prefix=run + "/"):
            if meta.value["status"] == FAILED:
                retry = ExecutionRecord.from_meta(meta.value).with_status(RUNNING)
                await store.meta_cas("executions", key, retry.to_meta(), version=meta.version)

        self._failures = []
        self._changed = asyncio.Event()
        await self.attach(f"{run}/{launcher.name}", run, launcher, packed, parent=None)
        for _, meta in await store.meta_scan("executions", prefix=run + "/"):
            execution = ExecutionRecord.from_meta(meta.value)
            if execution.status == RUNNING:
                self._spawn(execution)
        try:
            await self._wait_for_tasks()
        finally:
            await self._cancel_all()
        status = FAILED if self._failures else DONE
        await self._set_run_status(run, status)
        return RunResult(run, status, failures=tuple(self._failures))

    async def _wait_for_tasks(self) -> None:
        assert self._changed is not None
        while not self._failures:
            pending = [task for task in self._tasks.values() if not task.done()]
            if not pending:
                return
            self._changed.clear()
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait([*pending, changed], return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()

    async def _cancel_all(self) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def _set_run_status(self, run: str, status: str) -> None:
        while True:
            entry = await self.store.meta_get("runs", run)
            if entry is None:
                return
            record = RunRecord.from_meta(entry.value)
            if record.status == status:
                return
            updated = RunRecord(record.name, record.app, record.launcher, record.params, status)
            if await self.store.meta_cas("runs", run, updated.to_meta(), version=entry.version):
                return

    # -------------------------------------------------------------- executions

    @staticmethod
    def _pack_params(fn: StreamFunction, params: dict[str, Any]) -> bytes:
        try:
            return codec.pack(params, what="parameters")
        except EncodeError as error:
            raise ConfigError(f"cannot start {fn.name!r}: {error}") from error

    async def attach(
        self, execution: str, run: str, fn: StreamFunction, params: bytes, *, parent: str | None
    ) -> ExecutionRecord:
        """Create the execution if it does not exist yet, check it matches if it does, and
        run it here unless it is done or already running here.

        Raises:
            NondeterminismError: the stored execution has another function or parameters.
        """
        store = self.store
        entry = await store.meta_get("executions", execution)
        if entry is None:
            record = ExecutionRecord(execution, run, fn.name, str(fn.kind), params, parent)
            if await store.meta_cas("executions", execution, record.to_meta(), version=0) is None:
                entry = await store.meta_get("executions", execution)
        if entry is not None:
            record = ExecutionRecord.from_meta(entry.value)
            if record.function != fn.name or record.params != params:
                stored = {"function": record.function, "params": codec.unpack(record.params)}
                new = {"function": fn.name, "params": codec.unpack(params)}
                raise NondeterminismError(
                    execution=parent or execution,
                    function=fn.name,
                    seq=0,
                    stored=stored,
                    new=new,
                    diff="\n".join(structural_diff(stored, new, path="start")),
                    what=f"start of {execution!r}",
                )
        if record.status != DONE:
            self._spawn(record)
        return record

    def _spawn(self, record: ExecutionRecord) -> None:
        task = self._tasks.get(record.id)
        if task is not None:
            return
        execution = _Execution(self, record)
        self._tasks[record.id] = asyncio.get_running_loop().create_task(
            execution.main(), name=record.id
        )
        if self._changed is not None:
            self._changed.set()

    def _failed(self, failure: Failure) -> None:
        self._failures.append(failure)
        if self._changed is not None:
            self._changed.set()


class _Execution:
    """One execution running in this process: the host behind its Context."""

    def __init__(self, runtime: Runtime, record: ExecutionRecord) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.record = record
        self.execution = record.id
        self.run = record.run
        self.function = record.function
        self.state: dict[str, Any] = {}
        self._prefix = record.run if record.kind == Kind.LAUNCHER else record.id
        self._calls = 0
        self._effects_stream = record.id + EFFECTS_SUFFIX
        self._recorded_effects: list[Any] = []
        self._effect_position = 0
        self._pending_effects: list[Any] = []
        self._buffer: list[Any] = []
        self._out_seq = 0
        self._deadline: float | None = None

    # ---------------------------------------------------------------- running

    async def main(self) -> None:
        runtime = self.runtime
        record = self.record
        try:
            fn = runtime.app.function(record.function)
            params = codec.unpack(record.params)
            self._recorded_effects = [
                effect async for _, effect in self.store.read(self._effects_stream)
            ]
            ctx = Context(self, logging.getLogger(f"{runtime.app.name}.{fn.name}"))
            if fn.kind == Kind.LAUNCHER:
                await fn.fn(ctx, **params)
                await self.flush()
            else:
                result = fn.fn(ctx, **params)
                if hasattr(result, "__anext__"):
                    await self._drain(result)
                else:
                    await result
                await self.flush()
                await self.store.seal(record.id)
            await self._set_status(DONE)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if not isinstance(error, (NondeterminismError, EncodeError)):
                # What the function yielded before it raised is output like any other.
                with contextlib.suppress(Exception):
                    await self.flush()
            text = _describe(error)
            log.debug("execution %s failed: %s", record.id, text)
            try:
                await self._set_status(FAILED, text)
            finally:
                runtime._failed(Failure(record.id, record.function, text))

    async def _drain(self, agen: AsyncIterator[Any]) -> None:
        buffer = self._buffer
        limit = self.runtime.batch_size
        delay = self.runtime.flush_delay
        loop = asyncio.get_running_loop()
        async for item in agen:
            buffer.append(item)
            if len(buffer) >= limit:
                await self.flush()
            elif self._deadline is None:
                self._deadline = loop.time() + delay
            elif loop.time() >= self._deadline:
                await self.flush()

    async def flush(self) -> None:
        """Make recorded effects, then buffered output items, durable (in that order, so no
        stored item depends on an effect that is not recorded)."""
        self._deadline = None
        if self._pending_effects:
            effects = self._pending_effects
            self._pending_effects = []
            start = len(self._recorded_effects)
            await self.store.append(self._effects_stream, start, effects)
            self._recorded_effects.extend(effects)
        if self._buffer:
            items = self._buffer.copy()
            self._buffer.clear()  # in place: _drain holds a reference to this list
            seq = self._out_seq
            try:
                await self.store.append(self.record.id, seq, items)
            except ConflictError as conflict:
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
                raise EncodeError(error.type_name, f"{self.function!r}'s item at seq {at}"
                                  + error.path[len("item"):]) from None
            self._out_seq = seq + len(items)
            # Appends to local stores never suspend: give the other executions a turn
            # after each segment, so a busy producer cannot starve its readers.
            await asyncio.sleep(0)

    async def _set_status(self, status: str, error: str | None = None) -> None:
        store = self.store
        while True:
            entry = await store.meta_get("executions", self.execution)
            current = ExecutionRecord.from_meta(entry.value) if entry else self.record
            updated = current.with_status(status, error)
            if await store.meta_cas(
                "executions", self.execution, updated.to_meta(),
                version=entry.version if entry else 0,
            ) is not None:
                self.record = updated
                return

    # ------------------------------------------------------- the Context host

    async def read(self, stream: str) -> AsyncIterator[Any]:
        store = self.store
        position = 0
        while True:
            async for _, items in store.read_batches(stream, start=position):
                for item in items:
                    position += 1
                    yield item
            info = await store.info(stream)
            if info.head > position:
                continue
            if info.sealed:
                return
            # About to block: make our own output visible first, or a cycle would stall.
            await self.flush()
            await store.wait(stream, position, timeout=None)

    def reserve_call(self, fn: StreamFunction) -> StreamRef:
        if not isinstance(fn, StreamFunction) or fn.app is not self.runtime.app:
            raise ConfigError(
                f"{self.function!r} started {fn!r}: ctx.start and ctx.declare take a function "
                f"decorated with @app.stream or @app.action of app {self.runtime.app.name!r}"
            )
        if fn.kind == Kind.LAUNCHER:
            raise ConfigError(f"{self.function!r} cannot start the launcher {fn.name!r}")
        index = self._calls
        self._calls += 1
        return StreamRef(f"{self._prefix}/{fn.name}-{index}")

    async def start_reserved(
        self, ref: StreamRef, fn: StreamFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StreamRef:
        params = self.runtime._pack_params(fn, fn.bind(args, kwargs))
        await self.runtime.attach(ref.stream, self.run, fn, params, parent=self.execution)
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
        return self.runtime.entropy.randbytes(count)

    def entropy_float(self) -> float:
        return self.runtime.entropy.random()

    def wall_clock(self) -> float:
        return self.runtime.clock()


def _describe(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)).rstrip()
