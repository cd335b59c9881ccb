"""A deterministic asyncio event loop: virtual time, seeded scheduling, owned callbacks.

:class:`SimulatedLoop` implements the parts of :class:`asyncio.AbstractEventLoop` that
pure-asyncio code uses (tasks, futures, ``call_soon``/``call_later``/``call_at``,
``time``, async generator finalisation) and refuses the rest (threads, sockets,
subprocesses, executors, signals) with a :class:`SimulationRefused` that says why.

* **Virtual time.** ``loop.time()`` never reads a clock: while callbacks are ready, time
  stands still; when none is, it jumps to the earliest timer.
* **One seeded choice per step.** Every step runs one ready callback, chosen by the
  loop's own :class:`random.Random` among all ready ones, so one seed is one
  interleaving and other seeds explore others.
* **Owners.** Every callback belongs to an :class:`Owner` — a simulated worker process or
  the harness (:data:`ROOT`). The owner is taken from the callback's
  :mod:`contextvars` context (tasks and futures carry their task's context), so a task
  started for a worker, every task it starts and every wake-up of its futures belong to
  that worker, whoever triggered them. An owner can be **killed** (its callbacks are
  dropped and nothing of it runs again, like kill -9: no ``finally``, no cancellation) or
  **paused** (its callbacks wait aside, like SIGSTOP), and can have its own clock
  (offset and rate: skew).
* **Failure modes** are values, not hangs: nothing runnable and no timers while the main
  coroutine waits is a :class:`Deadlock`; more steps than the budget is a
  :class:`StepBudgetExceeded`. Both list each stuck task's await site.
* **Traces.** With ``trace=True`` every step feeds ``owner | callback | virtual time`` into
  a SHA-256; the same seed gives the same :attr:`SimulatedLoop.trace_hash`, in any
  process, under any ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import heapq
import math
import random
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from heapq import heappush
from typing import Any, TypeVar

# Re-exported: the simulator's errors live in perper's one error tree.
from perper.errors import Deadlock as Deadlock
from perper.errors import SimulationError as SimulationError
from perper.errors import SimulationRefused as SimulationRefused
from perper.errors import StepBudgetExceeded as StepBudgetExceeded

T = TypeVar("T")


class Owner:
    """Who a callback belongs to: a simulated worker process (or the harness).

    Attributes:
        name: stable, seed-independent name used in traces ("root", "w2", "w2.1").
        alive: False once killed; its callbacks are dropped from then on.
        paused: True while stopped; its callbacks are set aside until resumed.
        steps: how many steps of this owner ran (a worker's restarts continue the count).
        interrupt_at: when ``steps`` reaches this, :attr:`on_interrupt` is called before
            the step runs (the fault injector's hook); -1: never.
        on_interrupt: ``(owner) -> bool``; True means "do not run this step" (the owner
            was killed or paused there).
        offset, rate: this owner's clock, ``offset + rate * virtual_time``.
    """

    __slots__ = (
        "alive",
        "context",
        "interrupt_at",
        "name",
        "offset",
        "on_interrupt",
        "paused",
        "rate",
        "stash",
        "steps",
    )

    def __init__(
        self, name: str, *, offset: float = 0.0, rate: float = 1.0, steps: int = 0
    ) -> None:
        self.name = name
        self.alive = True
        self.paused = False
        self.steps = steps
        self.interrupt_at = -1
        self.on_interrupt: Callable[[Owner], bool] | None = None
        self.offset = offset
        self.rate = rate
        self.stash: list[SimHandle] = []
        context = contextvars.copy_context()
        context.run(OWNER.set, self)
        self.context = context

    def __repr__(self) -> str:
        state = "alive" if self.alive else "dead"
        return f"<Owner {self.name} {state}{' paused' if self.paused else ''} steps={self.steps}>"


#: The owner of the code that runs now (inherited by every task created under it).
OWNER: contextvars.ContextVar[Owner] = contextvars.ContextVar("simulator_owner")

#: The harness's owner: never killed, never paused, no skew.
ROOT = Owner("root")


class SimHandle:
    """A scheduled callback (``asyncio.Handle``/``TimerHandle`` look-alike)."""

    __slots__ = ("_args", "_callback", "_cancelled", "_context", "_owner", "_when")

    def __init__(
        self,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context,
        owner: Owner,
        when: float = 0.0,
    ) -> None:
        self._callback = callback
        self._args = args
        self._context = context
        self._owner = owner
        self._cancelled = False
        self._when = when

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def when(self) -> float:
        return self._when

    def get_context(self) -> contextvars.Context:
        return self._context

    def __repr__(self) -> str:
        return f"<SimHandle {describe_callback(self._callback)} owner={self._owner.name}>"


#: Makes a SimHandle without calling its __init__ (the loop's hot paths set the fields).
_new_handle = object.__new__

_DEAD_HANDLE = SimHandle(lambda: None, (), ROOT.context, ROOT)
_DEAD_HANDLE._cancelled = True


def describe_callback(callback: Any) -> str:
    """A stable description of a callback: the coroutine's qualified name for task
    steps and wake-ups, the function's otherwise (never an id or a global counter)."""
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Future):
        if isinstance(owner, asyncio.Task):
            coro = owner.get_coro()
            return "task " + getattr(coro, "__qualname__", type(coro).__name__)
        return "future " + getattr(callback, "__qualname__", type(callback).__name__)
    return getattr(callback, "__qualname__", None) or type(callback).__qualname__


def await_site(task: asyncio.Task[Any]) -> str:
    """Where a pending task waits: the innermost coroutine frame reachable from it."""
    coro: Any = task.get_coro()
    where = getattr(coro, "__qualname__", repr(coro))
    frame_desc = ""
    awaited: Any = None
    seen = 0
    while coro is not None and seen < 64:
        seen += 1
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "ag_frame", None)
            or getattr(coro, "gi_frame", None)
        )
        if frame is not None:
            code = frame.f_code
            frame_desc = f"{code.co_qualname} at {code.co_filename}:{frame.f_lineno}"
        nxt = getattr(coro, "cr_await", None)
        if nxt is None:
            nxt = getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)
        if nxt is None:
            break
        awaited = nxt
        coro = nxt
    what = ""
    if isinstance(awaited, asyncio.Future) or awaited is not None:
        what = f", awaiting {type(awaited).__name__}"
    return f"task {where}: {frame_desc or 'not started'}{what}"


class SimulatedLoop(asyncio.AbstractEventLoop):
    """A deterministic event loop. See the module docstring.

    Args:
        seed: seeds the scheduler's choices (nothing else).
        step_budget: raise :class:`StepBudgetExceeded` after this many steps (None: no limit).
        trace: hash every step into :attr:`trace_hash` (and keep the last steps in
            :attr:`trace_tail` for messages).
        step_time: virtual seconds each step costs (0: time moves only between steps
            when nothing is ready).
    """

    def __init__(
        self,
        seed: int | str = 0,
        *,
        step_budget: int | None = None,
        trace: bool = False,
        step_time: float = 0.0,
    ) -> None:
        self.seed = seed
        self._random = random.Random(seed)
        self._now = 0.0
        self._ready: list[SimHandle] = []
        self._timers: list[tuple[float, int, SimHandle]] = []
        self._timer_seq = 0
        self._current: Owner = ROOT
        self._closed = False
        self._running = False
        self._stopping = False
        self._debug = False
        self._exception_handler: (
            Callable[[asyncio.AbstractEventLoop, dict[str, Any]], Any] | None
        ) = None
        self._task_owners: weakref.WeakKeyDictionary[asyncio.Task[Any], Owner] = (
            weakref.WeakKeyDictionary()
        )
        # By id: every async generator whose finaliser is ours passed our firstiter hook,
        # which overwrote any entry a dead generator at the same address left (cheaper
        # than a weak reference per generator).
        self._agen_owners: dict[int, Owner] = {}
        self.step_budget = step_budget
        self.step_time = step_time
        self.steps = 0
        self.tracing = trace
        self._hash = hashlib.sha256() if trace else None
        self.trace_tail: list[str] = []
        #: Exceptions that reached the loop (callbacks that raised, tasks whose exception
        #: nobody retrieved), as asyncio's context dicts, in order.
        self.unhandled: list[dict[str, Any]] = []
        #: What the code under simulation asked for and was refused (threads, sockets...).
        self.refused: list[str] = []

    # ------------------------------------------------------------------ time

    def time(self) -> float:
        owner = self._current
        return owner.offset + owner.rate * self._now

    @property
    def virtual_time(self) -> float:
        """The simulation's own time (no owner's skew applied)."""
        return self._now

    @property
    def current_owner(self) -> Owner:
        return self._current

    @property
    def trace_hash(self) -> str:
        """SHA-256 of the steps so far (hex); empty unless tracing."""
        return self._hash.hexdigest() if self._hash is not None else ""

    # ------------------------------------------------------------- scheduling

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> SimHandle:
        if context is None:
            owner = self._current
            context = contextvars.copy_context()
        else:
            owner = context.get(OWNER, ROOT)
        if not owner.alive or self._closed:
            return _DEAD_HANDLE
        # Built field by field: a class call with a Python __init__ costs more than the
        # rest of call_soon, and every task step and wake-up comes through here.
        handle = _new_handle(SimHandle)
        handle._callback = callback
        handle._args = args
        handle._context = context
        handle._owner = owner
        handle._cancelled = False
        handle._when = 0.0
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> SimHandle:
        # The delay is measured on the caller's clock.
        current = self._current
        if delay < 0.0:
            delay = 0.0
        return self._call_at_virtual(self._now + delay / current.rate, callback, args, context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> SimHandle:
        caller = self._current
        virtual = (when - caller.offset) / caller.rate
        # Rounding may land a hair before ``when`` on the caller's clock; a real clock is
        # past the deadline when its timer runs, and code that re-waits for the remainder
        # would otherwise spin forever at one instant of virtual time.
        while caller.offset + caller.rate * virtual < when:
            virtual = math.nextafter(virtual, math.inf)
        return self._call_at_virtual(max(virtual, self._now), callback, args, context)

    def call_at_virtual(
        self, when: float, callback: Callable[..., Any], *args: Any, owner: Owner = ROOT
    ) -> SimHandle:
        """Schedule ``callback`` at virtual time ``when`` for ``owner`` (harness use)."""
        return self._call_at_virtual(max(when, self._now), callback, args, owner.context.copy())

    def _call_at_virtual(
        self,
        when: float,
        callback: Callable[..., Any],
        args: tuple[Any, ...],
        context: contextvars.Context | None,
    ) -> SimHandle:
        if context is None:
            owner = self._current
            context = contextvars.copy_context()
        else:
            owner = context.get(OWNER, ROOT)
        if not owner.alive or self._closed:
            return _DEAD_HANDLE
        handle = _new_handle(SimHandle)
        handle._callback = callback
        handle._args = args
        handle._context = context
        handle._owner = owner
        handle._cancelled = False
        handle._when = when
        self._timer_seq += 1
        heappush(self._timers, (when, self._timer_seq, handle))
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: Any = None
    ) -> Any:
        raise SimulationRefused(
            f"call_soon_threadsafe({describe_callback(callback)}): the simulation runs on one "
            "thread and cannot take callbacks from other threads; do the work in a coroutine"
        )

    # ------------------------------------------------------------ tasks, futures

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        if self._closed:
            coro.close()
            raise SimulationError("the simulated loop is closed")
        task: asyncio.Task[T] = asyncio.Task(coro, loop=self, name=name, context=context)
        self._task_owners[task] = context.get(OWNER, ROOT) if context is not None else self._current
        return task

    def spawn(
        self, owner: Owner, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a task of ``owner`` (and so are the tasks it starts)."""
        return self.create_task(coro, name=name, context=owner.context.copy())

    def tasks_of(self, owner: Owner) -> list[asyncio.Task[Any]]:
        """The pending tasks that belong to ``owner``."""
        return [
            task
            for task, who in list(self._task_owners.items())
            if who is owner and not task.done()
        ]

    def owner_of(self, task: asyncio.Task[Any]) -> Owner:
        return self._task_owners.get(task, ROOT)

    def set_task_factory(self, factory: Any) -> None:
        raise SimulationRefused("set_task_factory: the simulator creates its own tasks")

    def get_task_factory(self) -> None:
        return None

    # -------------------------------------------------------------- owners

    def kill(self, owner: Owner) -> list[asyncio.Task[Any]]:
        """Stop ``owner`` for good, like kill -9: drop its ready callbacks and timers and
        every callback scheduled for it later. Nothing of it runs again — no ``finally``,
        no cancellation. Returns its pending tasks, which the caller must keep referenced
        until :meth:`close` (a collected coroutine would run its ``finally`` blocks)."""
        tasks = self.tasks_of(owner)
        owner.alive = False
        owner.paused = False
        owner.stash.clear()
        # In place: the running loop holds both lists.
        self._ready[:] = [h for h in self._ready if h._owner is not owner]
        timers = [entry for entry in self._timers if entry[2]._owner is not owner]
        heapq.heapify(timers)
        self._timers[:] = timers
        return tasks

    def pause(self, owner: Owner) -> None:
        """Stop running ``owner``'s callbacks until :meth:`resume` (its clock goes on)."""
        owner.paused = True

    def resume(self, owner: Owner) -> None:
        """Let a paused owner run again; what became ready meanwhile is ready now."""
        owner.paused = False
        if owner.alive:
            self._ready.extend(owner.stash)
        owner.stash.clear()

    # ------------------------------------------------------------------ running

    def run_until_complete(  # type: ignore[override]
        self, future: Awaitable[T]
    ) -> T:
        """Run until ``future`` (a coroutine or future) is done; return its result.

        May be called while another event loop runs in this thread (the simulation runs
        to completion synchronously and restores it).

        Raises:
            Deadlock, StepBudgetExceeded: as described in the module docstring.
            SimulationRefused: the code asked for threads, sockets, etc.
        """
        if self._closed:
            raise SimulationError("the simulated loop is closed")
        if self._running:
            raise SimulationError("the simulated loop is already running")
        if asyncio.isfuture(future):
            main: asyncio.Future[T] = future
        else:
            main = self.create_task(future, context=ROOT.context.copy())  # type: ignore[arg-type]
        self._stopping = False
        main.add_done_callback(self._stop_on_done)
        self._run(main)
        if not main.done():
            raise SimulationError("the simulated loop stopped before its main coroutine finished")
        return main.result()

    def _stop_on_done(self, _: Any) -> None:
        self._stopping = True

    def run_forever(self) -> None:
        self._stopping = False
        self._run(None)

    def _run(self, main: asyncio.Future[Any] | None) -> None:
        previous_loop = asyncio.events._get_running_loop()
        previous_hooks = sys.get_asyncgen_hooks()
        previous_current = self._current
        self._running = True
        asyncio.events._set_running_loop(self)
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_finalizer
        )
        start = threading.Thread.start
        sim_thread = threading.get_ident()

        def refuse_threads(thread: threading.Thread) -> None:
            if threading.get_ident() == sim_thread and self._running:
                self.refused.append(f"thread {thread.name!r}")
                raise SimulationRefused(
                    f"starting thread {thread.name!r}: the simulator runs everything on one "
                    "thread in virtual time; use asyncio tasks instead of threads"
                )
            start(thread)

        threading.Thread.start = refuse_threads  # type: ignore[assignment]
        try:
            self._loop(main)
        finally:
            threading.Thread.start = start  # type: ignore[method-assign]
            self._current = previous_current
            self._running = False
            sys.set_asyncgen_hooks(*previous_hooks)
            asyncio.events._set_running_loop(previous_loop)

    def _loop(self, main: asyncio.Future[Any] | None) -> None:
        # The lists are changed in place only (kill, resume, close), so locals hold them.
        ready = self._ready
        timers = self._timers
        rnd = self._random.random
        heappop = heapq.heappop
        budget = self.step_budget if self.step_budget is not None else -1
        step_time = self.step_time
        hasher = self._hash
        steps = self.steps
        while not self._stopping:
            now = self._now
            if timers and timers[0][0] <= now:
                while timers and timers[0][0] <= now:
                    handle = heappop(timers)[2]
                    if not handle._cancelled:
                        ready.append(handle)
            n = len(ready)
            if n == 0:
                if not timers:
                    raise Deadlock(
                        f"deadlock at step {self.steps}, virtual time {self._now:.6f}: nothing is "
                        "runnable and no timer is pending",
                        self.pending_sites(),
                    )
                self._now = timers[0][0]
                continue
            if n == 1:
                handle = ready.pop()
            else:
                # The chosen one leaves; the last takes its place.
                index = int(rnd() * n)
                handle = ready.pop()
                if index != n - 1:
                    handle, ready[index] = ready[index], handle
            if handle._cancelled:
                continue
            owner = handle._owner
            if not owner.alive:
                continue
            if owner.paused:
                owner.stash.append(handle)
                continue
            owner.steps = owner_steps = owner.steps + 1
            if owner_steps == owner.interrupt_at and owner.on_interrupt is not None:
                self._current = owner
                if owner.on_interrupt(owner):
                    if owner.alive and owner.paused:
                        owner.stash.append(handle)
                    continue
            steps += 1
            self.steps = steps
            if steps == budget:
                raise StepBudgetExceeded(
                    f"step budget of {budget} steps exhausted at virtual time {self._now:.6f}",
                    self.pending_sites(),
                )
            if hasher is not None:
                line = f"{owner.name}|{describe_callback(handle._callback)}|{n}|{now!r}\n"
                hasher.update(line.encode())
                tail = self.trace_tail
                tail.append(line.rstrip("\n"))
                if len(tail) > 64:
                    del tail[:32]
            # Left set after the step (the next step or on_interrupt sets it again; _run
            # restores the caller's when the loop stops).
            self._current = owner
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt, SimulationError):
                raise
            except BaseException as error:
                self.call_exception_handler(
                    {
                        "message": f"exception in callback {describe_callback(handle._callback)}",
                        "exception": error,
                        "handle": handle,
                    }
                )
            if step_time:
                self._now += step_time

    def pending_sites(self) -> list[str]:
        """One line per pending task, sorted: owner, coroutine, await site."""
        sites = []
        for task, owner in list(self._task_owners.items()):
            if not task.done() and owner.alive:
                sites.append(f"[{owner.name}] {await_site(task)}")
        return sorted(sites)

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the loop; coroutines still pending are closed quietly (their ``finally``
        blocks run with the loop closed, so they can schedule nothing)."""
        if self._closed:
            return
        self._closed = True
        pending = [task for task in list(self._task_owners) if not task.done()]
        self._ready.clear()
        self._timers.clear()
        hook = sys.unraisablehook
        sys.unraisablehook = lambda _: None
        previous_loop = asyncio.events._get_running_loop()
        try:
            asyncio.events._set_running_loop(self)
            for task in pending:
                task._log_destroy_pending = False  # type: ignore[attr-defined]
                coro = task.get_coro()
                with contextlib.suppress(BaseException):  # teardown of a finished world
                    coro.close()
        finally:
            asyncio.events._set_running_loop(previous_loop)
            sys.unraisablehook = hook
        self._task_owners = weakref.WeakKeyDictionary()
        self._agen_owners.clear()

    async def shutdown_asyncgens(self) -> None:
        return None

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        return None

    # ------------------------------------------------------- async generators

    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._agen_owners[id(agen)] = self._current

    def _asyncgen_finalizer(self, agen: Any) -> None:
        # Like asyncio: an abandoned async generator is closed in a task — of its owner,
        # and not at all if that owner is dead (kill -9 runs no finally).
        owner = self._agen_owners.pop(id(agen), self._current)
        if self._closed or not owner.alive:
            return
        self.create_task(agen.aclose(), context=owner.context.copy())

    # ------------------------------------------------------------------ errors

    def get_exception_handler(self) -> Any:
        return self._exception_handler

    def set_exception_handler(self, handler: Any) -> None:
        self._exception_handler = handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.unhandled.append(context)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        task = context.get("task") or context.get("future")
        if isinstance(task, asyncio.Task):
            owner = self._task_owners.get(task, ROOT)
            if not owner.alive or self._closed:
                return  # a killed worker's leftovers
        if self._exception_handler is not None:
            self._exception_handler(self, context)
        else:
            self.default_exception_handler(context)

    def get_debug(self) -> bool:
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        self._debug = enabled

    # --------------------------------------------------------- refused APIs

    def _refuse(self, what: str) -> Any:
        self.refused.append(what)
        raise SimulationRefused(
            f"{what}: the simulator has no real I/O, threads or processes; a stream function "
            "reads and writes only through perper (ctx.read, yield, recorded effects)"
        )

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Any, *args: Any
    ) -> Any:
        return self._refuse(f"run_in_executor({describe_callback(func)}) (also asyncio.to_thread)")

    def set_default_executor(self, executor: Any) -> None:
        self._refuse("set_default_executor")

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("getaddrinfo (sockets)")

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("getnameinfo (sockets)")

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("create_connection (sockets)")

    async def create_server(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("create_server (sockets)")

    async def create_datagram_endpoint(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("create_datagram_endpoint (sockets)")

    async def create_unix_connection(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("create_unix_connection (sockets)")

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("create_unix_server (sockets)")

    async def connect_accepted_socket(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("connect_accepted_socket (sockets)")

    async def sendfile(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sendfile (sockets)")

    async def start_tls(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("start_tls (sockets)")

    async def sock_recv(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_recv (sockets)")

    async def sock_recv_into(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_recv_into (sockets)")

    async def sock_sendall(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_sendall (sockets)")

    async def sock_connect(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_connect (sockets)")

    async def sock_recvfrom(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_recvfrom (sockets)")

    async def sock_recvfrom_into(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_recvfrom_into (sockets)")

    async def sock_sendto(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_sendto (sockets)")

    async def sock_accept(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_accept (sockets)")

    async def sock_sendfile(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("sock_sendfile (sockets)")

    def add_reader(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Any:
        return self._refuse("add_reader (file descriptors)")

    def remove_reader(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("remove_reader (file descriptors)")

    def add_writer(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Any:
        return self._refuse("add_writer (file descriptors)")

    def remove_writer(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("remove_writer (file descriptors)")

    async def connect_read_pipe(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("connect_read_pipe (pipes)")

    async def connect_write_pipe(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("connect_write_pipe (pipes)")

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("subprocess_exec (processes)")

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("subprocess_shell (processes)")

    def add_signal_handler(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Any:
        return self._refuse("add_signal_handler (signals)")

    def remove_signal_handler(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("remove_signal_handler (signals)")


def run_simulated(
    main: Coroutine[Any, Any, T],
    *,
    seed: int | str = 0,
    step_budget: int | None = 10_000_000,
    trace: bool = False,
) -> T:
    """Run ``main`` on a fresh :class:`SimulatedLoop` and close it (``asyncio.run`` for
    simulations)."""
    loop = SimulatedLoop(seed, step_budget=step_budget, trace=trace)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()
