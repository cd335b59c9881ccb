"""Calls, agent instances and agent state, built on executions and streams.

* A **call** is an execution of kind ``call`` (or ``stop``) in the callee's run. Its id
  derives from the caller and the caller's call index (shared with ``ctx.start``), so a
  re-run caller finds the same call. Its output stream holds one item, the outcome
  ``{"ok": value}`` or ``{"error": {...}}``, and is then sealed: the result is as durable
  as any item, re-running the callee compares its outcome with the stored one, and the
  caller waits for it like a reader waits for an item. A callee that raises finishes its
  execution (done) with an error outcome; only runtime failures (nondeterminism, a value
  that cannot be encoded) fail it.
* A call whose App this worker serves runs **inline** (``ExecutionCalls._inline``): in
  the caller's task under the caller's lease, recorded when it ends by one
  :meth:`~perper.store.base.LogStore.write_group` (new effects, sealed outcome, record
  ``done``). Calls of Apps served elsewhere are recorded first and run by a worker that
  holds their lease. docs/agents.md says why both keep every guarantee.
* An **agent instance** is a run of another App: ``ctx.start_agent`` records the run and
  its launcher (whose ``parent`` is the caller) and waits until the launcher is done.
  One :class:`CallSupport` per worker keeps a sibling :class:`Runtime` per other App,
  each working that App's runs next to the caller's runtime.
* **Agent state** of instance ``run`` is the log stream ``{run}/#agent-state`` of
  ``[key, op, value, writer]`` entries; the current map is the fold of the log. A write
  appends at the head (a lost race is a ConflictError: read the newer entries, retry),
  which makes ``update`` a compare-and-set. ``writer`` is ``{execution}@{effect
  position}``: a write is applied before its effect is recorded, so a recovering
  execution that finds its effect unrecorded looks for its writer id in the log and
  never applies the same write twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from perper import codec
from perper.agents import AgentRef, current_host, set_current
from perper.app import App, Kind, StreamFunction, imported_apps
from perper.context import Context
from perper.errors import (
    AgentDestroyedError,
    CallFailedError,
    ConfigError,
    ConflictError,
    EncodeError,
    FencedError,
    GapError,
    NondeterminismError,
    StoreUnavailableError,
)
from perper.runtime.ids import EFFECTS_SUFFIX, Status
from perper.runtime.leases import Lease
from perper.runtime.records import (
    DONE,
    FAILED,
    RUNNING,
    ExecutionRecord,
    check_run_name,
)
from perper.store.base import KEEP, LogStore, MetaWrite, SegmentWrite, encode_segment

if TYPE_CHECKING:
    from perper.runtime.engine import Runtime
    from perper.runtime.execution import Execution

#: Execution kinds that run as calls (one outcome item, then sealed).
CALL_KINDS = (str(Kind.CALL), str(Kind.STOP))

#: Run status of a destroyed agent instance.
DESTROYED = str(Status.DESTROYED)

#: Status of an execution of a destroyed instance that had not finished.
CANCELLED = str(Status.CANCELLED)

#: Suffix (after ``{run}/``) of an agent instance's state log.
STATE_STREAM = "#agent-state"


def state_stream(run: str) -> str:
    """The stream holding the agent state log of instance ``run``."""
    return f"{run}/{STATE_STREAM}"


def called_name(fn: StreamFunction | str, caller: str) -> str:
    """The name of the function ``caller`` asks to call: ``fn`` itself or its ``.name``.

    Raises:
        ConfigError: ``fn`` is neither a name nor a registered function.
    """
    function = fn if isinstance(fn, str) else getattr(fn, "name", None)
    if not isinstance(function, str):
        raise ConfigError(
            f"{caller!r} called {fn!r}: pass a function decorated with @app.call or its name"
        )
    return function


def call_id(
    target_run: str, function: str, index: int, caller: str, caller_run: str, caller_prefix: str
) -> str:
    """The id of the ``index``-th call (or start) made by execution ``caller``.

    A call on the caller's own instance is named like a started stream,
    ``{prefix}/{function}-{index}``; a call on another instance lives in that instance's
    run and names the caller: ``{target}/{function}-{index}@{caller with / as .}``.
    """
    if target_run == caller_run:
        return f"{caller_prefix}/{function}-{index}"
    return f"{target_run}/{function}-{index}@{caller.replace('/', '.')}"


def child_instance(caller: str, caller_run: str, app: App, index: int, launcher: bool) -> str:
    """The run name of the agent instance started by ``caller``'s ``index``-th call."""
    base = caller_run if launcher else caller.replace("/", ".")
    name = f"{base}.{app.name}-{index}"
    if len(name) > 128:
        digest = hashlib.blake2b(caller.encode(), digest_size=6).hexdigest()
        name = f"{caller_run[:80]}.{app.name}-{digest}-{index}"
    return check_run_name(name)


def pack_call_params(function: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A call's recorded parameters: its arguments as given (bound when it runs)."""
    try:
        return codec.pack({"args": list(args), "kwargs": kwargs}, what="call arguments")
    except EncodeError as error:
        raise ConfigError(f"cannot call {function!r}: {error}") from error


def outcome_error(error: BaseException) -> dict[str, Any]:
    """The stored outcome of a call whose function raised ``error``."""
    return {
        "error": {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)).rstrip(),
        }
    }


def result_of(outcome: Any, function: str, execution: str) -> Any:
    """The call's result from its stored outcome.

    Raises:
        CallFailedError: the outcome is an error.
    """
    if isinstance(outcome, dict) and "error" in outcome:
        error = outcome["error"]
        raise CallFailedError(
            function, execution, error["type"], error["message"], error["traceback"]
        )
    return outcome["ok"]


async def set_running_unless_over(store: LogStore, run: str) -> str | None:
    """Make a done run running again (a new call arrived); return the run's status."""

    def revive(value: Any) -> Any:
        if value is None or value["status"] != DONE:
            return KEEP
        return {**value, "status": str(RUNNING)}

    entry = await store.meta_update("runs", run, revive)
    return None if entry is None else str(entry.value["status"])


async def seed_lease(store: LogStore, execution: str) -> None:
    """Before call ``execution`` is recorded for another worker to run: an inline run of it
    whose caller died may have written its streams with that caller's lease epoch, which
    would fence a new lease's epoch 1; make its lease start above that epoch."""
    epoch = max(
        [(await store.info(stream)).epoch for stream in (execution, execution + EFFECTS_SUFFIX)]
    )
    if epoch:
        await store.meta_cas("leases", execution, Lease(None, epoch).to_meta(), version=0)


async def stored_outcome(store: LogStore, execution: str) -> tuple[bool, Any]:
    """``(True, outcome)`` if call ``execution`` has stored its outcome, else ``(False,
    None)``."""
    found, outcome = False, None
    async for _, item in store.read(execution, 0, 1):  # runs to its end: stop is 1
        found, outcome = True, item
    return found, outcome


async def await_outcome(
    store: LogStore,
    execution: str,
    run: str,
    function: str,
    *,
    timeout: float | None = None,
    revive: bool = False,
) -> Any:
    """Wait for call ``execution`` to store its outcome and return the result.

    While waiting it checks the execution (failed: CallFailedError with its traceback)
    and, with ``revive``, keeps the callee's run running so a worker picks the call up.

    Raises:
        CallFailedError: the callee raised, or its execution failed.
        TimeoutError: ``timeout`` seconds of loop time passed.
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.05
    while True:
        found, outcome = await stored_outcome(store, execution)
        if found:
            return result_of(outcome, function, execution)
        wait = delay
        if deadline is not None:
            wait = min(wait, deadline - loop.time())
            if wait <= 0:
                raise TimeoutError(f"no result of call {execution!r} within {timeout} s")
        if await store.wait(execution, 0, timeout=wait):
            continue  # the outcome landed (the usual case: no status read needed)
        entry = await store.meta_get("executions", execution)
        if entry is not None and entry.value["status"] == FAILED:
            text = entry.value.get("error") or ""
            last = text.rstrip().splitlines()[-1] if text.strip() else "failed"
            kind, _, message = last.partition(": ")
            raise CallFailedError(function, execution, kind, message, text)
        if revive:
            await set_running_unless_over(store, run)
        delay = min(delay * 2, 1.0)


async def outside_call(
    store: LogStore,
    run: str,
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    key: str,
    timeout: float | None,
) -> Any:
    """``perper.call``: record a call of ``function`` in ``run`` keyed by ``key`` (unless
    recorded) and wait for its result; a worker serving the run's App runs it."""
    if not key or "/" in key or "#" in key:
        raise ConfigError(f"call key {key!r} must be non-empty, without '/' or '#'")
    entry = await store.meta_get("runs", run)
    if entry is None:
        raise ConfigError(
            f"no run {run!r} in {store.url}: start it with perper run, or list them with "
            "perper agents ls"
        )
    execution = f"{run}/{function}@{key}"
    params = pack_call_params(function, args, kwargs)
    existing = await store.meta_get("executions", execution)
    if existing is None:
        if entry.value["status"] == DESTROYED:
            raise AgentDestroyedError(run, function)
        record = ExecutionRecord(execution, run, function, str(Kind.CALL), params, None)
        await store.meta_cas("executions", execution, record.to_meta(), version=0)
        existing = await store.meta_get("executions", execution)
        assert existing is not None
    if existing.value["params"] != params:
        raise ConfigError(
            f"call key {key!r} of {run!r} was used for {existing.value['function']!r} with "
            f"{codec.unpack(existing.value['params'])!r}; use another key for other arguments"
        )
    return await await_outcome(store, execution, run, function, timeout=timeout, revive=True)


async def cancel_executions(store: LogStore, run: str) -> None:
    """Finish the running executions of destroyed instance ``run``: a call whose outcome
    is stored is done (its worker died before saying so), anything else is cancelled."""
    for key, meta in await store.meta_scan("executions", prefix=run + "/"):
        if meta.value["status"] != RUNNING:
            continue
        finished = meta.value["kind"] in CALL_KINDS and await store.head(key) > 0
        status = str(DONE) if finished else CANCELLED

        def finish(value: Any, status: str = status) -> Any:
            if value is None or value["status"] != RUNNING:
                return KEEP
            return {**value, "status": status}

        await store.meta_update("executions", key, finish)


async def call(
    store: LogStore,
    run: str,
    function: str,
    *args: Any,
    key: str | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``function`` of the agent instance (run) ``run`` from outside the runtime and
    return its result (``perper.call``); a ``perper worker`` serving the run's App runs it.

    With ``key`` the request is idempotent: calling again with the same key returns the
    first call's result without running it again. The call is recorded in the run, as an
    input of it (like an ingest item).

    Raises:
        ConfigError: no such run, a bad key, or a key used before with other arguments.
        AgentDestroyedError: the instance was destroyed.
        CallFailedError: the function raised.
        TimeoutError: ``timeout`` seconds passed without a result.
    """
    if key is None:
        key = os.urandom(8).hex()
    return await outside_call(store, run, function, args, kwargs, key=key, timeout=timeout)


# ------------------------------------------------------------- inside a worker


class CallSupport:
    """Per worker: the runtimes of the other Apps (agent types) it has met, each working
    their runs beside the first, and the agent-state views of this process."""

    def __init__(self, root: Runtime) -> None:
        self.root = root
        self.runtimes: dict[str, Runtime] = {root.app.name: root}
        self._workers: dict[str, asyncio.Task[Any]] = {}
        self._stop = asyncio.Event()
        self.views: dict[str, StateView] = {}
        self._loggers: dict[str, logging.Logger] = {}

    def serve_imported(self, runtime: Runtime) -> None:
        """Start runtimes for the Apps the root App's modules import (its agent types),
        so a worker serves their instances even when no launcher of this worker starts
        them (a restarted worker, ``perper worker``)."""
        if runtime is self.root:
            for app in imported_apps(runtime.app):
                self.runtime_for(app)

    def app_named(self, name: str) -> App | None:
        runtime = self.runtimes.get(name)
        return None if runtime is None else runtime.app

    def runtime_for(self, app: App) -> Runtime:
        """The runtime running ``app``'s instances in this worker, started if need be."""
        runtime = self.runtimes.get(app.name)
        if runtime is not None and runtime.app is not app:
            raise ConfigError(
                f"two different Apps are named {app.name!r}; give agent types distinct names"
            )
        if runtime is None:
            from perper.runtime.engine import Runtime

            root = self.root
            runtime = Runtime(
                root.store,
                app,
                settings=root.settings,
                hooks=root.hooks,
                clock=root.clock,
                entropy=root.entropy,
                worker_id=f"{root.worker_id}+{app.name}",
            )
            runtime.calls = self
            self.runtimes[app.name] = runtime
        worker = self._workers.get(app.name)
        if app.name != self.root.app.name and (worker is None or worker.done()):
            if self._stop.is_set():
                self._stop = asyncio.Event()
            self._workers[app.name] = asyncio.get_running_loop().create_task(
                runtime.work(stop=self._stop), name=f"{runtime.worker_id} work"
            )
        return runtime

    async def close(self, runtime: Runtime) -> None:
        """Stop the other Apps' runtimes when the root runtime stops working."""
        if runtime is not self.root or not self._workers:
            return
        self._stop.set()
        workers = list(self._workers.values())
        self._workers.clear()
        await asyncio.gather(*workers, return_exceptions=True)

    def local_task(self, execution: str) -> asyncio.Task[None] | None:
        for runtime in self.runtimes.values():
            held = runtime._tasks.get(execution)
            if held is not None:
                return held[0]
        return None

    def logger(self, fn: StreamFunction) -> logging.Logger:
        """The ``ctx.log`` of call function ``fn`` (looked up once per function)."""
        name = f"{fn.app.name}.{fn.name}"
        found = self._loggers.get(name)
        if found is None:
            found = self._loggers[name] = logging.getLogger(name)
        return found

    def view(self, run: str) -> StateView:
        view = self.views.get(run)
        if view is None:
            view = self.views[run] = StateView(self.root.store, state_stream(run))
        return view


class StateView:
    """This process's fold of an agent instance's state log."""

    def __init__(self, store: LogStore, stream: str) -> None:
        self.store = store
        self.stream = stream
        self.values: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}
        self.head = 0
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async for seq, (key, op, value, writer) in self.store.read(self.stream, self.head):
            self._apply(seq, key, op, value, writer)

    def _apply(self, seq: int, key: str, op: str, value: Any, writer: str) -> None:
        if op == "set":
            self.values[key] = value
        else:
            self.values.pop(key, None)
        self.writers[writer] = value
        self.head = seq + 1

    def lookup(self, key: str) -> list[Any]:
        if key in self.values:
            return [True, self.values[key]]
        return [False, None]

    async def write(self, key: str, writer: str, make: Callable[[Any], tuple[str, Any]]) -> Any:
        """Apply ``make(current value)`` -> (op, value) once for ``writer``; return the
        value written (the one stored first, if this writer had written already)."""
        async with self._lock:
            while True:
                await self.refresh()
                if writer in self.writers:
                    return self.writers[writer]
                op, value = make(self.values.get(key))
                try:
                    await self.store.append(self.stream, self.head, [[key, op, value, writer]])
                except (ConflictError, GapError):
                    continue  # another writer got there first: fold its entry, retry
                self._apply(self.head, key, op, value, writer)
                return value


class ExecutionCalls:
    """The :class:`perper.agents.Caller` of one running execution."""

    def __init__(self, execution: Execution) -> None:
        self.x = execution
        self.support: CallSupport = execution.worker.calls
        self.store = execution.store

    # ----------------------------------------------------------------- calls

    def _reserve(self) -> int:
        index: int = self.x._calls
        self.x._calls = index + 1
        return index

    def call(
        self,
        fn: StreamFunction | str,
        agent: AgentRef | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]:
        x = self.x
        if agent is not None and not isinstance(agent, AgentRef):
            raise ConfigError(f"{agent!r} is not a perper.AgentRef")
        app = x.worker.app if agent is None else self.support.app_named(agent.app)
        target_run = x.run if agent is None else agent.instance
        function = called_name(fn, x.function)
        target: StreamFunction | None = None
        if app is not None:
            target = app.function(function)
            if target.kind != Kind.CALL:
                raise ConfigError(
                    f"{x.function!r} called {function!r}, a {target.kind} of app {app.name!r}: "
                    "only @app.call functions can be called"
                )
            if isinstance(fn, StreamFunction) and fn.app is not app:
                raise ConfigError(
                    f"{x.function!r} called {fn.name!r} of app {fn.app.name!r} on an instance "
                    f"of {app.name!r}"
                )
            target.bind(args, kwargs)  # a clear error at the call site
        params = pack_call_params(function, args, kwargs)
        execution = call_id(target_run, function, self._reserve(), x.execution, x.run, x._prefix)
        return self._call(execution, target_run, function, target, params, agent)

    async def _call(
        self,
        execution: str,
        run: str,
        function: str,
        target: StreamFunction | None,
        params: bytes,
        agent: AgentRef | None,
    ) -> Any:
        x = self.x
        store = self.store
        if x._pending_effects or x._buffer or x._flushing:
            # What the arguments may depend on is recorded first. (Skipped when nothing
            # is pending: concurrent calls then reach their group writes together.)
            await x.flush()
        # A fresh caller (see Execution.fresh) has made none of its calls before.
        recorded = None if x.fresh else await store.meta_get("executions", execution)
        if agent is not None and recorded is None:
            entry = await store.meta_get("runs", run)
            if entry is None:
                raise ConfigError(f"agent {run!r} does not exist in {store.url}")
            if entry.value["status"] == DESTROYED:
                # A stale owner of the caller may have looked before the owner that took
                # it over made this call and then destroyed the agent: look once more.
                recorded = await store.meta_get("executions", execution)
                if recorded is None:
                    raise AgentDestroyedError(run, function)
        if recorded is not None and recorded.value["status"] == CANCELLED:
            # Cancelled by the agent's destruction before it stored an outcome.
            found, outcome = await stored_outcome(store, execution)
            if not found:
                raise AgentDestroyedError(run, function)
            return result_of(outcome, function, execution)
        if recorded is not None and recorded.value["status"] == DONE:
            # A re-run caller: the stored outcome is the result (a sealed, done call).
            found, outcome = await stored_outcome(store, execution)
            if found:
                return result_of(outcome, function, execution)
        if target is not None and recorded is None:
            return await self._inline(execution, run, target, params)
        if target is not None:
            runtime = self.support.runtime_for(target.app)
            await runtime.attach(execution, run, target, params, parent=x.execution)
        else:
            await seed_lease(store, execution)
            record = ExecutionRecord(execution, run, function, str(Kind.CALL), params, x.execution)
            await store.meta_cas("executions", execution, record.to_meta(), version=0)
        return await self._await(execution, run, function, revive=agent is not None)

    async def _inline(self, execution: str, run: str, target: StreamFunction, params: bytes) -> Any:
        """Run call ``execution`` of ``target``, served by this worker, in the caller's
        task under the caller's lease, and record it as a done call in one group write.

        Nothing is recorded before it ends but what it records itself on the way (effects
        before a nested call, agent-state writes, streams it starts), so a crash before
        the group lands leaves no call record: the re-run caller makes the same call
        again, and it runs again from its recorded effects. Its writes carry the caller's
        lease epoch, so a caller's stale owner is fenced on them too. If the group is
        refused (another run of the same call got there first, or a crash left part of it
        on a store without transactions), it finishes with the idempotent writes the
        leased path uses, which compare what is stored.
        """
        from perper.runtime.execution import Execution

        x = self.x
        store = self.store
        support = self.support
        runtime = support.runtime_for(target.app)
        record = ExecutionRecord(execution, run, target.name, str(Kind.CALL), params, x.execution)
        callee = Execution(runtime, record, x.epoch)
        callee._task = x._task
        callee.fresh = x.fresh
        if not x.fresh and (await store.info(callee._effects_stream)).head:
            # An earlier run of this call (its caller crashed since) recorded effects.
            callee._recorded_effects = [
                effect async for _, effect in store.read(callee._effects_stream)
            ]
        blocked = x.blocked
        x.blocked = True
        host = current_host()
        try:
            ctx = Context(callee, support.logger(target))
            arguments = codec.unpack(params)  # a copy: the callee cannot touch the caller's
            try:
                bound = target.bind(tuple(arguments["args"]), arguments["kwargs"])
            except ConfigError as error:
                outcome: Any = outcome_error(error)
                data = encode_segment([outcome])
            else:
                try:
                    outcome, data = await _run_encoded(target, ctx, bound)
                except NondeterminismError as error:
                    # Recorded as the leased path records it: a failed call, the run fails.
                    await callee._fail(error)
                    text = callee.record.error or ""
                    raise CallFailedError(
                        target.name, execution, type(error).__name__, str(error), text
                    ) from None
            if not await self._record_inline(callee, data):
                await self._finish_inline(callee, runtime, outcome)
            return result_of(outcome, target.name, execution)
        finally:
            x.blocked = blocked
            if host is not None:
                set_current(host)  # the callee's Context made itself current in this task

    async def _record_inline(self, callee: Execution, data: bytes) -> bool:
        """The group write of an inline call: its new effects, its outcome (``data``, the
        encoded segment; sealed) and its record, done."""
        epoch = callee.epoch
        writes = []
        effects = callee._pending_effects
        if effects:
            start = len(callee._recorded_effects)
            writes.append(
                SegmentWrite(
                    callee._effects_stream, start, len(effects), encode_segment(effects), epoch
                )
            )
        writes.append(SegmentWrite(callee.execution, 0, 1, data, epoch, seal=True))
        done = callee.record.with_status(DONE)
        if not await self.store.write_group(
            writes, [MetaWrite("executions", callee.execution, done.to_meta())]
        ):
            return False
        callee._recorded_effects.extend(effects)
        callee._pending_effects = []
        callee.record = done
        return True

    async def _finish_inline(self, callee: Execution, runtime: Runtime, outcome: Any) -> None:
        """Finish an inline call whose group write was refused, comparing with what is
        stored: effects, outcome, seal, then the record (checked against this call) done."""
        callee._buffer.append(outcome)
        await callee.flush()
        await self.store.seal(callee.execution, epoch=callee.epoch)
        record = callee.record
        fn = runtime.app.function(record.function)
        await runtime.create_execution(
            record.id, record.run, fn, record.params, parent=record.parent
        )
        await callee._set_status(DONE)

    async def _await(self, execution: str, run: str, function: str, *, revive: bool) -> Any:
        x = self.x
        if revive:
            await set_running_unless_over(self.store, run)
        blocked = x.blocked
        x.blocked = True
        try:
            result = await await_outcome(self.store, execution, run, function, revive=revive)
            if revive:
                # A call on another instance: go on once it is done (sealed, recorded), so
                # a run ends only after every call it made; another worker may finish it.
                await self._await_done(execution, function, revive=run)
            return result
        finally:
            x.blocked = blocked

    # ---------------------------------------------------------------- agents

    def start_agent(
        self, app: App, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[AgentRef]:
        x = self.x
        if not isinstance(app, App):
            raise ConfigError(
                f"ctx.start_agent({app!r}): pass a perper.App (import the agent type's module)"
            )
        launcher = app.launcher_function
        bound = launcher.bind(args, kwargs)
        instance = child_instance(
            x.execution, x.run, app, self._reserve(), x.record.kind == Kind.LAUNCHER
        )
        return self._start_agent(app, instance, launcher, bound)

    async def _start_agent(
        self, app: App, instance: str, launcher: StreamFunction, bound: dict[str, Any]
    ) -> AgentRef:
        x = self.x
        store = self.store
        await x.flush()
        runtime = self.support.runtime_for(app)
        ref = AgentRef(instance, app.name)
        entry = await store.meta_get("runs", instance)
        if entry is not None and entry.value["status"] == DESTROYED:
            return ref
        packed = runtime.pack_params(launcher, bound)
        launcher_id = f"{instance}/{launcher.name}"
        if entry is None or entry.value["status"] != DONE:
            await runtime.create_execution(
                launcher_id, instance, launcher, packed, parent=x.execution
            )
            await runtime.prepare_run(instance, bound)
            await runtime.attach(launcher_id, instance, launcher, packed, parent=x.execution)
        blocked = x.blocked
        x.blocked = True
        try:
            await self._await_done(launcher_id, launcher.name)
        finally:
            x.blocked = blocked
        return ref

    async def _await_done(self, execution: str, function: str, *, revive: str = "") -> None:
        delay = 0.01
        while True:
            entry = await self.store.meta_get("executions", execution)
            if entry is not None and entry.value["status"] == DONE:
                return
            if entry is not None and entry.value["status"] == FAILED:
                text = entry.value.get("error") or ""
                last = text.rstrip().splitlines()[-1] if text.strip() else "failed"
                kind, _, message = last.partition(": ")
                raise CallFailedError(function, execution, kind, message, text)
            if revive:
                await set_running_unless_over(self.store, revive)
            task = self.support.local_task(execution)
            if task is not None:
                await asyncio.wait([task], timeout=delay)
            else:
                await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    def destroy(self, agent: AgentRef) -> Awaitable[None]:
        if not isinstance(agent, AgentRef):
            raise ConfigError(f"{agent!r} is not a perper.AgentRef")
        index = self._reserve()
        return self._destroy(agent, index)

    async def _destroy(self, agent: AgentRef, index: int) -> None:
        x = self.x
        store = self.store
        await x.flush()
        entry = await store.meta_get("runs", agent.instance)
        if entry is None:
            raise ConfigError(f"agent {agent.instance!r} does not exist in {store.url}")
        if entry.value["status"] == DESTROYED:
            return
        app = self.support.app_named(agent.app)
        if app is not None and app.stop_name is not None:
            stop = app.functions[app.stop_name]
            execution = call_id(agent.instance, stop.name, index, x.execution, x.run, x._prefix)
            params = pack_call_params(stop.name, (), {})
            runtime = self.support.runtime_for(app)
            await runtime.attach(execution, agent.instance, stop, params, parent=x.execution)
            await self._await(execution, agent.instance, stop.name, revive=True)
            await self._await_done(execution, stop.name)

        def mark(value: Any) -> Any:
            if value is None or value["status"] == DESTROYED:
                return KEEP
            return {**value, "status": DESTROYED}

        await store.meta_update("runs", agent.instance, mark)
        for runtime in list(self.support.runtimes.values()):
            await runtime._cancel_run(agent.instance)
        await cancel_executions(store, agent.instance)

    # ----------------------------------------------------------- agent state

    def _recorded(self) -> bool:
        x = self.x
        return x._effect_position < len(x._recorded_effects)

    async def state_get(self, key: str, default: Any) -> Any:
        x = self.x
        if self._recorded():
            present, value = x.effect("agent_state.get", _unrecorded)
        else:
            view = self.support.view(x.run)
            await view.refresh()
            present, value = x.effect("agent_state.get", lambda: view.lookup(key))
        return value if present else default

    async def _write(self, kind: str, key: str, make: Callable[[Any], tuple[str, Any]]) -> Any:
        x = self.x
        if self._recorded():
            return x.effect(kind, _unrecorded)
        writer = f"{x.execution}@{x._effect_position}"
        value = await self.support.view(x.run).write(key, writer, make)
        return x.effect(kind, lambda: value)

    async def state_set(self, key: str, value: Any) -> None:
        _check_value(key, value)
        await self._write("agent_state.set", key, lambda _: ("set", value))

    async def state_remove(self, key: str) -> None:
        await self._write("agent_state.remove", key, lambda _: ("remove", None))

    async def state_update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        def make(current: Any) -> tuple[str, Any]:
            new = fn(current)
            _check_value(key, new)
            return "set", new

        return await self._write("agent_state.update", key, make)


def _unrecorded() -> Any:
    raise AssertionError("effect expected to be recorded")


def _check_value(key: str, value: Any) -> None:
    codec.pack(value, what=f"agent_state[{key!r}]")


async def run_call(x: Execution) -> None:
    """Run call execution ``x`` to its end: one outcome item, the seal, done."""
    runtime = x.worker
    record = x.record
    fn = runtime.app.functions.get(record.function)
    missing: ConfigError | None = None
    if fn is None:
        missing = ConfigError(
            f"app {runtime.app.name!r} has no function {record.function!r}; its calls are "
            + (
                ", ".join(
                    sorted(n for n, f in runtime.app.functions.items() if f.kind == Kind.CALL)
                )
                or "none"
            )
        )
    elif fn.kind not in (Kind.CALL, Kind.STOP):
        missing = ConfigError(f"{record.function!r} is a {fn.kind}, not a call")
    params = codec.unpack(record.params)
    x._recorded_effects = [effect async for _, effect in x.store.read(x._effects_stream)]
    if missing is not None:
        outcome: AsyncIterator[Any] = _constant(outcome_error(missing))
    else:
        assert fn is not None
        ctx = Context(x, logging.getLogger(f"{fn.app.name}.{fn.name}"))
        outcome = _outcome(fn, ctx, params)
    await x._drain(outcome)
    await x.flush()
    await x.store.seal(record.id, epoch=x.epoch)
    await x._set_status(DONE)


async def call_outcome(fn: StreamFunction, ctx: Context, params: dict[str, Any]) -> Any:
    """The one outcome item of call function ``fn`` run with its recorded ``params``
    (``{"args": [...], "kwargs": {...}}``): ``{"ok": result}``, or ``{"error": ...}`` if
    the arguments do not bind or it raised. Runtime errors propagate."""
    try:
        bound = fn.bind(tuple(params["args"]), params["kwargs"])
    except ConfigError as error:
        return outcome_error(error)
    return await _run_bound(fn, ctx, bound)


async def _run_bound(fn: StreamFunction, ctx: Context, bound: dict[str, Any]) -> Any:
    try:
        value = await fn.fn(ctx, **bound)
        codec.pack(value, what=f"the result of {fn.name!r}")
    except (NondeterminismError, FencedError, StoreUnavailableError):
        raise
    except Exception as error:
        return outcome_error(error)
    return {"ok": value}


async def _run_encoded(
    fn: StreamFunction, ctx: Context, bound: dict[str, Any]
) -> tuple[Any, bytes]:
    """:func:`_run_bound` for an inline call: the outcome and its encoded segment (the
    outcome is encoded once, which also checks that the result can be)."""
    try:
        value = await fn.fn(ctx, **bound)
        outcome: Any = {"ok": value}
        try:
            return outcome, encode_segment([outcome])
        except EncodeError:
            codec.pack(value, what=f"the result of {fn.name!r}")  # names the bad value
            raise
    except (NondeterminismError, FencedError, StoreUnavailableError):
        raise
    except Exception as error:
        outcome = outcome_error(error)
    return outcome, encode_segment([outcome])


async def _constant(value: Any) -> AsyncIterator[Any]:
    yield value


async def _outcome(fn: StreamFunction, ctx: Context, params: dict[str, Any]) -> AsyncIterator[Any]:
    yield await call_outcome(fn, ctx, params)


async def outcome_of(fn: StreamFunction, ctx: Context, bound: dict[str, Any]) -> AsyncIterator[Any]:
    """Run call function ``fn`` with its bound arguments; yield its one outcome item
    (``{"ok": result}``, or ``{"error": ...}`` if it raised). Runtime errors propagate."""
    yield await _run_bound(fn, ctx, bound)


__all__ = [
    "CALL_KINDS",
    "DESTROYED",
    "AgentRow",
    "CallSupport",
    "ExecutionCalls",
    "await_outcome",
    "call",
    "call_id",
    "list_agents",
    "outside_call",
    "run_call",
    "state_stream",
]


# ------------------------------------------------------------------ listing


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent instance as ``perper agents ls`` shows it.

    Attributes:
        instance: the instance id (its run name).
        app: its App (agent type).
        status: ``running``, ``done`` (its launcher returned, nothing runs now; it still
            serves calls), ``failed`` or ``destroyed``.
        parent: the execution that started it (empty for a top-level run).
        calls_made: calls its executions made (on any instance).
        calls_served: calls executed by it.
    """

    instance: str
    app: str
    status: str
    parent: str
    calls_made: int
    calls_served: int


async def list_agents(store: LogStore) -> list[AgentRow]:
    """Every agent instance (run) in ``store``, by name."""
    runs = await store.meta_scan("runs")
    records = [
        ExecutionRecord.from_meta(meta.value) for _, meta in await store.meta_scan("executions")
    ]
    by_run: dict[str, list[ExecutionRecord]] = {}
    made: dict[str, int] = {}
    for record in records:
        by_run.setdefault(record.run, []).append(record)
        if record.kind in CALL_KINDS and record.parent:
            caller_run = record.parent.split("/", 1)[0]
            made[caller_run] = made.get(caller_run, 0) + 1
    rows = []
    for name, meta in sorted(runs):
        value = meta.value
        launcher = f"{name}/{value['launcher']}"
        executions = by_run.get(name, [])
        parent = next((r.parent or "" for r in executions if r.id == launcher), "")
        served = sum(1 for r in executions if r.kind in CALL_KINDS)
        rows.append(
            AgentRow(name, value["app"], value["status"], parent, made.get(name, 0), served)
        )
    return rows
