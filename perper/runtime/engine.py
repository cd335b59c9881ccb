"""The runtime: a worker that runs executions as asyncio tasks against a LogStore.

Every execution runs under a lease (:mod:`perper.runtime.leases`), so any number of
runtimes — in one process or in ``perper worker`` processes on other machines — can
share a store: each execution runs in exactly one of them, a dead worker's executions
are taken over once its leases expire, and a stale one is fenced.

Simulator-friendly by construction: time comes from the event loop (``loop.time()`` for
flush deadlines, lease expiry, checkpoint intervals and polling), wall-clock time and
randomness only from the ``clock`` and ``entropy`` the caller passes (and only through
recorded effects), the store from the caller. No threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from perper import codec
from perper.app import App, StreamFunction
from perper.diff import structural_diff
from perper.errors import (
    ConfigError,
    EncodeError,
    ExecutionFailedError,
    FormatError,
    NondeterminismError,
    StoreError,
    StoreUnavailableError,
)
from perper.runtime.calls import CALL_KINDS, DESTROYED, CallSupport
from perper.runtime.execution import Execution, Stopped
from perper.runtime.ids import DONE, FAILED, RUNNING, Status, check_run_name
from perper.runtime.leases import Leases
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.runtime.settings import NO_HOOKS, RuntimeHooks, RuntimeSettings
from perper.runtime.workers import WorkerRegistry
from perper.store.base import KEEP, LogStore, Meta

log = logging.getLogger("perper.runtime")

#: How far past a lease's expiry the work loop's next poll is timed (seconds of loop
#: time), so that rounding in the loop's clock cannot wake it just before.
_PAST_DUE = 1e-6


@dataclass(frozen=True, slots=True)
class Failure:
    """An execution that failed, with its stored traceback."""

    execution: str
    function: str
    error: str


async def run_executions(store: LogStore, run: str) -> list[ExecutionRecord]:
    """Every execution record of ``run``, by id."""
    return [
        ExecutionRecord.from_meta(meta.value, key)
        for key, meta in await store.meta_scan("executions", prefix=run + "/")
    ]


def failures_of(records: list[ExecutionRecord]) -> tuple[Failure, ...]:
    """The failed executions among ``records``, with their stored tracebacks."""
    return tuple(Failure(r.id, r.function, r.error or "") for r in records if r.status == FAILED)


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
    status: Status
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
    """A worker: runs the executions it holds leases on, in this process.

    Args:
        store: where streams and metadata live.
        app: the application whose functions run.
        settings: the tuning knobs (:class:`RuntimeSettings`; default: its defaults).
        hooks: what a test harness or the simulator injects (:class:`RuntimeHooks`);
            production code passes none.
        clock: wall-clock source behind ``ctx.now()`` (default :func:`time.time`); only
            called when an effect is recorded for the first time.
        entropy: randomness behind ``ctx.random()``/``ctx.uuid()`` and the worker id
            (default: seeded from the OS); only drawn for new effects.
        worker_id: this worker's name in leases (default: random).
        **overrides: single settings by name, applied over ``settings``
            (``Runtime(store, app, batch_size=7)``).

    Raises:
        ConfigError: an override that is not a setting, or a value out of range.
    """

    def __init__(
        self,
        store: LogStore,
        app: App,
        *,
        settings: RuntimeSettings | None = None,
        hooks: RuntimeHooks = NO_HOOKS,
        clock: Callable[[], float] | None = None,
        entropy: random.Random | None = None,
        worker_id: str | None = None,
        **overrides: Any,
    ) -> None:
        settings = settings if settings is not None else RuntimeSettings()
        if overrides:
            settings = settings.with_overrides(**overrides)
        self.store = store
        self.app = app
        self.settings = settings
        self.hooks = hooks
        self.clock = clock or time.time
        self.entropy = entropy or random.Random(os.urandom(16))
        self.worker_id = worker_id or f"worker-{self.entropy.randbytes(4).hex()}"
        self.leases = Leases(store, self.worker_id, settings.lease_ttl)
        #: This worker's presence lease (perper.runtime.workers) and its view of its peers.
        self.registry = WorkerRegistry(store, app.name, self.worker_id, settings.lease_ttl)
        self.stopping = False
        #: The first corruption (FormatError) an execution met; work() raises it.
        self.corruption: FormatError | None = None
        self._tasks: dict[str, tuple[asyncio.Task[None], Execution]] = {}
        self._claiming: set[str] = set()
        # Execution rows the work loop has checked, by id: the version it checked.
        self._checked: dict[str, int] = {}
        # Executions giving their lease back: the renewer leaves them alone (a renewal
        # racing the release would find the lease free and call it lost).
        self._releasing: set[str] = set()
        self._wake: asyncio.Event | None = None
        # The runtimes of other Apps (agent types) this worker runs instances of.
        self.calls = CallSupport(self)

    # -------------------------------------------------------------------- runs

    async def run(self, run: str, params: dict[str, Any] | None = None) -> RunResult:
        """Run (or resume) ``run`` here until every finite execution is done or one fails.

        Re-running a finished run returns at once; re-running an unfinished one resumes
        it: the launcher runs again and re-attaches to the streams it started, failed
        executions are retried, and executions held by a worker that died are taken over
        once their leases expire. Items already stored are verified, never duplicated.

        Raises:
            ConfigError: bad run name or launcher parameters, or parameters that differ
                from the ones the run was started with.
        """
        if await self.prepare_run(run, params):
            return RunResult(run, DONE, already_done=True)
        result = await self.work(run=run)
        assert result is not None
        return result

    async def prepare_run(self, run: str, params: dict[str, Any] | None = None) -> bool:
        """Record the run and its launcher execution, or check them against the record;
        return True if the run is already done. Workers then run it (:meth:`work`).

        Raises:
            ConfigError: as :meth:`run`.
        """
        check_run_name(run)
        launcher = self.app.launcher_function
        bound = launcher.bind((), dict(params or {}))
        packed = self.pack_params(launcher, bound)
        store = self.store
        entry = await store.meta_get("runs", run)
        if entry is not None:
            record = RunRecord.from_meta(entry.value, run)
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
                return True
        else:
            record = RunRecord(run, self.app.name, launcher.name, packed, started=self.clock())
            await store.meta_cas("runs", run, record.to_meta(), version=0)
        for key, meta in await store.meta_scan("executions", prefix=run + "/"):
            # Every record decoded and checked once, as the run (re)starts: a corrupt
            # row stops it here, named, before the supervision loop reads raw rows.
            if (stored := ExecutionRecord.from_meta(meta.value, key)).status == FAILED:
                retry = stored.with_status(RUNNING)
                await store.meta_cas("executions", key, retry.to_meta(), version=meta.version)
        await self._set_run_status(run, RUNNING)
        await self.create_execution(f"{run}/{launcher.name}", run, launcher, packed, parent=None)
        return False

    async def work(
        self, *, run: str | None = None, stop: asyncio.Event | None = None
    ) -> RunResult | None:
        """Claim and run unfinished executions until ``stop`` is set — or, given ``run``,
        until that run is done or failed (then return its result).

        Without ``run`` it works on every running run of this app in the store. On
        ``stop`` it stops gracefully: executions flush, checkpoint and give their leases
        back.
        """
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.stopping = False
        self.corruption = None
        # Only a worker that takes any run is a peer new runs are spread over.
        registered = run is None
        if registered:
            with contextlib.suppress(StoreError):  # the renewer tries again
                await self.registry.beat()
        renewer = loop.create_task(self._renew_forever(registered), name=f"{self.worker_id} leases")
        self.calls.serve_imported(self)
        poll = self.settings.poll_interval
        unavailable_since: float | None = None
        try:
            while stop is None or not stop.is_set():
                try:
                    result, progressed = await self._step(run)
                except StoreUnavailableError as error:
                    now = loop.time()
                    unavailable_since = unavailable_since if unavailable_since is not None else now
                    if now - unavailable_since > self.settings.store_retry_limit:
                        raise
                    log.warning("worker %s: store unavailable, retrying: %s", self.worker_id, error)
                    result, progressed = None, False
                else:
                    unavailable_since = None
                if self.corruption is not None:
                    raise self.corruption
                if result is not None:
                    return result
                poll = (
                    self.settings.poll_interval
                    if progressed
                    else min(poll * 2, self.settings.lease_ttl / 2)
                )
                # Polled again by the time a lease seen held can have expired, not up to
                # half a ttl after (a dead worker's executions are taken over sooner).
                wait = poll
                due = self.leases.due()
                if due is not None:
                    wait = min(poll, max(due - loop.time(), 0.0) + _PAST_DUE)
                self._wake.clear()
                if stop is None:
                    # One event to wait for, which a timer sets when the poll is due: no
                    # waiter tasks to start and cancel per poll (each is a task and two
                    # loop turns, in the simulator too), and no cancellation and
                    # TimeoutError raised through the wait for every idle poll.
                    timer = loop.call_later(wait, self._wake.set)
                    try:
                        await self._wake.wait()
                    finally:
                        timer.cancel()
                    continue
                waits: list[asyncio.Future[Any]] = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waits:
                        waiter.cancel()
            return None
        except asyncio.CancelledError:
            renewer.cancel()
            await self._shutdown(graceful=False)
            raise
        finally:
            if not renewer.done():
                renewer.cancel()
                await self._shutdown(graceful=True)
                if registered:
                    with contextlib.suppress(StoreError):
                        await self.registry.beat(stopped=True)
            await self.calls.close(self)

    async def _step(self, only_run: str | None) -> tuple[RunResult | None, bool]:
        store = self.store
        # New runs go to the live workers in turn, by their index among the app's runs
        # (perper.runtime.workers); all of them, so that finished runs do not shift it.
        runs: list[tuple[str, bool]] = []
        if only_run is not None:
            runs = [(only_run, False)]
        else:
            registry = self.registry
            every = sorted(
                (key, meta.value["status"])
                for key, meta in await store.meta_scan_shared("runs")
                if meta.value["app"] == self.app.name
            )
            runs = [
                (key, not registry.mine(index))
                for index, (key, status) in enumerate(every)
                if status == RUNNING
            ]
        progressed = False
        tasks = self._tasks
        claiming = self._claiming
        leases = self.leases
        checked = self._checked
        # The rows decoded this poll (or earlier, at the same version): the next poll's
        # `checked`, so that it holds no execution that is gone or finished.
        fresh: dict[str, int] = {}
        for run, defer in runs:
            entry = await store.meta_get_shared("runs", run)
            # Raw rows, one pass: a run with many finished calls is mostly done records,
            # which need no decoding to be counted.
            rows = await store.meta_scan_shared("executions", prefix=run + "/")
            failed: list[ExecutionRecord] = []
            unfinished: list[tuple[str, Meta] | None] = []
            for key, meta in rows:
                status = meta.value["status"]
                if status == RUNNING:
                    unfinished.append((key, meta))
                elif status == FAILED:
                    failed.append(ExecutionRecord.from_meta(meta.value, key))
                elif status != DONE and status != Status.CANCELLED:
                    unfinished.append(None)  # not finished, and nothing to claim
            failures = failures_of(failed) if failed else ()
            if failures or (entry is not None and entry.value["status"] == FAILED):
                await self._cancel_run(run)
                await self._set_run_status(run, FAILED)
                if run == only_run:
                    return RunResult(run, FAILED, failures=failures), True
                continue
            if (rows and not unfinished) or (entry is not None and entry.value["status"] == DONE):
                await self._set_run_status(run, DONE)
                if run == only_run:
                    return RunResult(run, DONE), True
                continue
            for row in unfinished:
                if row is None or row[0] in tasks or row[0] in claiming:
                    continue
                key, meta = row
                # A running row is checked before its lease is tried, as every poll did,
                # but once per version: an idle worker sees the same rows poll after poll
                # (a corrupt one is a FormatError naming it all the same).
                if checked.get(key) != meta.version:
                    ExecutionRecord.from_meta(meta.value, key)
                fresh[key] = meta.version
                # The lease row is read here and a lease another worker holds is left
                # alone without a claim coroutine (what most of an idle poll's are).
                lease = await store.meta_get_shared("leases", key)
                if leases.declines(key, lease, defer_fresh=defer):
                    continue
                if await self._claim_and_spawn(key, read=True, lease=lease):
                    progressed = True
        self._checked = fresh
        self.leases.keep_only(fresh)
        return None, progressed

    async def stop_execution(self, execution: str) -> None:
        """Cancel the task running ``execution`` here, if any, and wait for it to end
        (its record says cancelled: ``ctx.destroy``)."""
        running = self._tasks.get(execution)
        if running is not None and running[0] is not asyncio.current_task():
            running[0].cancel()
            await asyncio.gather(running[0], return_exceptions=True)

    async def _cancel_run(self, run: str) -> None:
        doomed = [task for key, (task, _) in self._tasks.items() if key.startswith(run + "/")]
        for task in doomed:
            task.cancel()
        if doomed:
            await asyncio.gather(*doomed, return_exceptions=True)

    async def _shutdown(self, *, graceful: bool) -> None:
        self.stopping = True
        for task, execution in list(self._tasks.values()):
            if execution.blocked or not graceful:
                task.cancel()
            else:
                execution.interrupt()
        pending = [task for task, _ in self._tasks.values() if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=max(self.settings.lease_ttl, 1.0))
            for task in pending:  # in a deterministic order, not the set's
                if task in late:
                    task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        self.stopping = False

    async def _renew_forever(self, registered: bool) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_ttl / 4)
            if registered:
                with contextlib.suppress(StoreError):  # next round; peers see it late
                    await self.registry.beat()
            for execution_id, (task, execution) in list(self._tasks.items()):
                if task.done() or execution_id in self._releasing:
                    continue
                if execution.unfenced:
                    continue  # planted bug: never notices it lost the lease
                try:
                    renewed = await self.leases.renew(execution_id, execution.epoch)
                except StoreUnavailableError:
                    continue  # try again next round; the lease may expire meanwhile
                if not renewed and execution_id not in self._releasing:
                    log.warning("worker %s lost the lease of %s", self.worker_id, execution_id)
                    task.cancel()

    async def _set_run_status(self, run: str, status: Status) -> None:
        def update(value: Any) -> Any:
            if value is None:
                return KEEP
            record = RunRecord.from_meta(value)
            if record.status in (status, DESTROYED):  # a destroyed agent stays destroyed
                return KEEP
            return replace(record, status=status).to_meta()

        await self.store.meta_update("runs", run, update)

    # -------------------------------------------------------------- executions

    @staticmethod
    def pack_params(fn: StreamFunction, params: dict[str, Any]) -> bytes:
        """Encode ``fn``'s bound parameters as stored in its execution record.

        Raises:
            ConfigError: a parameter is not msgpack-able.
        """
        try:
            return codec.pack(params, what="parameters")
        except EncodeError as error:
            raise ConfigError(f"cannot start {fn.name!r}: {error}") from error

    _pack_params = pack_params  # the name bench/recovery.py knows

    async def create_execution(
        self, execution: str, run: str, fn: StreamFunction, params: bytes, *, parent: str | None
    ) -> ExecutionRecord:
        """Record the execution unless it exists; if it does, check it is the same.

        Raises:
            NondeterminismError: the stored execution has another function or parameters.
        """
        store = self.store
        entry = await store.meta_get("executions", execution)
        if entry is None:
            record = ExecutionRecord(execution, run, fn.name, str(fn.kind), params, parent)
            if await store.meta_cas("executions", execution, record.to_meta(), version=0):
                return record
            entry = await store.meta_get("executions", execution)
            assert entry is not None
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
        return record

    async def attach(
        self, execution: str, run: str, fn: StreamFunction, params: bytes, *, parent: str | None
    ) -> ExecutionRecord:
        """Create (or check) the execution and, unless it is done, run it here if its
        lease can be had; otherwise the worker holding it runs it."""
        record = await self.create_execution(execution, run, fn, params, parent=parent)
        if record.status == RUNNING and execution not in self._tasks:
            await self._claim_and_spawn(execution)
        return record

    async def _claim_and_spawn(
        self,
        execution_id: str,
        *,
        defer_fresh: bool = False,
        read: bool = False,
        lease: Meta | None = None,
    ) -> bool:
        # ctx.start (attach) and the poll loop (_step) may both try at once. ``read``: the
        # poll read the lease row as ``lease`` (and Leases.declines passed it): take it.
        if execution_id in self._tasks or execution_id in self._claiming:
            return False
        self._claiming.add(execution_id)
        try:
            if read:
                epoch = await self.leases.take(execution_id, lease)
            else:
                epoch = await self.leases.claim(execution_id, defer_fresh=defer_fresh)
            if epoch is None:
                return False
            # The caller's view may be stale: the execution can have finished (here or
            # elsewhere) between reading it and claiming its lease. Re-read it.
            entry = await self.store.meta_get("executions", execution_id)
            if entry is None or entry.value["status"] != RUNNING:
                await self.leases.release(execution_id, epoch)
                return False
        finally:
            self._claiming.discard(execution_id)
        try:
            record = ExecutionRecord.from_meta(entry.value, execution_id)
        except FormatError:
            with contextlib.suppress(StoreError):  # corrupt: not run, and not held either
                await self.leases.release(execution_id, epoch)
            raise
        execution = Execution(self, record, epoch)
        task = asyncio.get_running_loop().create_task(self._supervise(execution), name=record.id)
        self._tasks[record.id] = (task, execution)
        return True

    async def _supervise(self, execution: Execution) -> None:
        try:
            await execution.main()
            if execution.record.status != RUNNING:
                self.registry.ran += 1
        except Stopped:
            pass
        except FormatError as error:
            # Corruption is reported, never worked around: the work loop raises it.
            log.error("execution %s stopped: %s", execution.execution, error)
            if self.corruption is None:
                self.corruption = error
            self.wake_up()
        except StoreError as error:
            # Escaped main (e.g. the status write of a finished execution): give the
            # execution back to be run again rather than hold it with no task running it.
            log.warning("execution %s paused: %s", execution.execution, error)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self.leases.release(execution.execution, execution.epoch)
            self._forget(execution)
            raise
        # Anything else (a simulated crash) leaves the lease held, as kill -9 would.
        self._releasing.add(execution.execution)
        try:
            with contextlib.suppress(StoreError):  # unreachable store: the lease expires
                await self.leases.release(execution.execution, execution.epoch)
        finally:
            self._releasing.discard(execution.execution)
            # Also when the renewer cancels us mid-release: never strand the execution.
            self._forget(execution)

    def _forget(self, execution: Execution) -> None:
        current = self._tasks.get(execution.execution)
        if current is not None and current[1] is execution:
            del self._tasks[execution.execution]
        if execution.record.kind in CALL_KINDS and execution.record.status == DONE:
            return  # its caller is waiting for it and still running: nothing to look at
        self.wake_up()

    def wake_up(self) -> None:
        """Make the work loop look at the run again (an execution ended or failed)."""
        if self._wake is not None:
            self._wake.set()

    async def execute(self, execution: str) -> None:
        """Run one recorded execution to its end in the calling task (for harnesses).

        Raises:
            ConfigError: no such execution, or its lease is held by another worker.
            ExecutionFailedError: the function failed.
        """
        entry = await self.store.meta_get("executions", execution)
        if entry is None:
            raise ConfigError(f"no execution {execution!r} in {self.store.url}")
        record = ExecutionRecord.from_meta(entry.value)
        epoch = await self.leases.claim(execution)
        if epoch is None:
            raise ConfigError(f"execution {execution!r} is leased by another worker")
        runner = Execution(self, record, epoch)
        with contextlib.suppress(Stopped):  # paused or fenced: give the lease back all the same
            await runner.main()
        await self.leases.release(execution, epoch)
        if runner.record.status == FAILED:
            raise ExecutionFailedError(execution, record.function, runner.record.error or "")
