"""A simulated deployment: N workers running the real perper runtime, unmodified, on one
shared :class:`~perper.store.memory.MemoryStore` behind per-worker fault views, in a
:class:`~simulator.loop.SimulatedLoop`.

A worker is a :class:`perper.runtime.Runtime` with its own owner in the loop (so it can
be killed or paused as a unit), its own skewed clock, its own entropy and its own
:class:`~simulator.faults.FaultyStore`; it runs ``Runtime.work(run=...)``. The harness
records the run first (``prepare_run``). A crashed worker is restarted as a fresh
Runtime with a new worker id; the leases its predecessor held expire by observation.

:func:`simulate` runs one scenario and returns a :class:`SimulationResult`;
:func:`reference_run` produces the fault-free :class:`~simulator.checkers.Reference`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import gc
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from perper.app import App
from perper.errors import (
    AgentDestroyedError,
    CallFailedError,
    ConfigError,
    StoreUnavailableError,
)
from perper.errors import SimulationFailed as SimulationFailed  # re-exported
from perper.runtime import Runtime
from perper.runtime.calls import outside_call
from perper.runtime.engine import RunResult
from perper.runtime.ids import DONE, EFFECTS_SUFFIX, FAILED
from perper.runtime.settings import RuntimeHooks, RuntimeSettings
from perper.runtime.settings import planted_bugs as planted_bugs_named
from perper.store.index import IndexSpec
from perper.store.memory import MemoryStore
from simulator.checkers import (
    SEGMENT_HEADER,
    FencingChecker,
    OutputChecker,
    Reference,
    Violation,
    ViolationKind,
    error_summary,
    failed_execution,
)
from simulator.faults import (
    Crash,
    Errors,
    Fault,
    FaultyStore,
    Latency,
    Partition,
    Pause,
    Scenario,
    Skew,
    Timeouts,
)
from simulator.loop import ROOT, Deadlock, Owner, SimulatedLoop, SimulationError, StepBudgetExceeded

#: The run name every simulation uses (stream names derive from it).
RUN = "sim"
#: What ``ctx.now()`` reads at virtual time 0 on an unskewed worker.
EPOCH = 1_700_000_000.0
#: Steps one seed may take before it counts as a livelock.
DEFAULT_STEP_BUDGET = 2_000_000


@dataclass(frozen=True)
class SimulationResult:
    """The outcome of one simulated deployment (one seed).

    Attributes:
        seed: the seed.
        scenario: everything derived from it (workers, settings, fault schedule).
        violation: the first thing that went wrong, or None.
        fired: the faults that actually happened, in words, in order.
        steps: scheduling steps run.
        virtual_time: simulated seconds.
        wall_time: real seconds the simulation took.
        trace_hash: SHA-256 of the step trace (empty unless traced).
        notes: things worth knowing that are not violations.
    """

    seed: int
    scenario: Scenario
    violation: Violation | None
    fired: tuple[str, ...] = ()
    steps: int = 0
    virtual_time: float = 0.0
    wall_time: float = 0.0
    trace_hash: str = ""
    notes: tuple[str, ...] = ()
    worker_steps: tuple[int, ...] = ()
    store: MemoryStore | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.violation is None

    def raise_on_failure(self) -> None:
        """Raise :class:`SimulationFailed` describing the violation, if any."""
        if self.violation is not None:
            raise SimulationFailed(self.describe(), self)

    def describe(self) -> str:
        head = f"seed {self.seed}: " + ("ok" if self.ok else "FAILED")
        lines = [head, "  derived parameters:"]
        lines.extend("    " + line for line in self.scenario.describe())
        lines.append("  fault schedule:")
        lines.extend("    " + fault.describe() for fault in self.scenario.schedule)
        if not self.scenario.schedule:
            lines.append("    (none)")
        if self.fired:
            lines.append("  faults that happened:")
            lines.extend("    " + line for line in self.fired)
        if self.violation is not None:
            lines.append("  first violation:")
            lines.extend("    " + line for line in self.violation.describe().splitlines())
        lines.extend("  note: " + note for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


#: Violations that show an output differing from the reference (a cause may be named).
_DIVERGENCE_KINDS = frozenset(
    {"output-mismatch", "extra-item", "missing-items", "replay-divergence", "nondeterminism"}
)


@dataclass(frozen=True)
class Feed:
    """What a simulated producer appends to an ingest stream (or to a stream outside the
    run that it reads).

    Attributes:
        batches: the items, in the batches (segments) they were recorded in, in order.
        sealed: whether to seal the stream after the last batch.
        spacing: the longest virtual pause before each batch (seconds).
        first: the seq of the first batch (the items below it are preloaded).
        index: the stream's index declaration, declared before the workers start (a
            producer declared it, ``Producer(index=...)``).
    """

    batches: tuple[tuple[Any, ...], ...]
    sealed: bool = True
    spacing: float = 0.05
    first: int = 0
    index: IndexSpec | None = None


@dataclass(frozen=True)
class ExternalCall:
    """A call made from outside the run (``perper call``, ``perper.call``) that a
    recorded run took as an input; a simulated caller makes it again.

    Attributes:
        run: the run (or agent instance) called.
        function: the ``@app.call`` function's name.
        args, kwargs: the arguments, as recorded.
        key: the call's idempotency key (it names the call's execution).
    """

    run: str
    function: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    key: str


async def prepare_store(
    store: MemoryStore,
    app: App,
    params: Mapping[str, Any],
    preload: Mapping[str, Sequence[Any]],
    run: str,
) -> bool:
    """Write the preloaded streams and record the run as the harness does before the
    workers start; True if the run was already done."""
    for stream, items in preload.items():
        await store.append(stream, 0, list(items))
    harness = Runtime(
        store, app, clock=lambda: EPOCH, entropy=random.Random(0), worker_id="harness"
    )
    return await harness.prepare_run(run, dict(params))


@dataclass(frozen=True)
class PreparedStore:
    """The shared store as :func:`prepare_store` leaves it: the same for every seed of
    one workload, so a :class:`~simulator.campaign.Simulation` computes it once and each
    seed starts from a copy (no re-encoding of preloaded streams, no harness run)."""

    streams: Mapping[str, Any] = field(repr=False)
    meta: Mapping[str, Mapping[str, tuple[int, bytes]]] = field(repr=False)

    @classmethod
    def build(
        cls,
        app: App,
        params: Mapping[str, Any],
        preload: Mapping[str, Sequence[Any]],
        run: str = RUN,
    ) -> PreparedStore:
        store = MemoryStore("memory://prepared")
        loop = SimulatedLoop(0)
        try:
            loop.run_until_complete(prepare_store(store, app, params, preload, run))
        finally:
            loop.close()
        return cls(dict(store._streams), {t: dict(rows) for t, rows in store._meta.items()})

    def restore(self, store: MemoryStore) -> None:
        """Copy this into the empty ``store`` (segments and metadata are immutable bytes;
        the streams' lists are copied, as the run appends to them)."""
        for name, stream in self.streams.items():
            fresh = copy.copy(stream)
            fresh.firsts, fresh.data = list(stream.firsts), list(stream.data)
            store._streams[name] = fresh
        for table, rows in self.meta.items():
            store._meta[table] = dict(rows)


class LazyRandom:
    """Stands for ``random.Random(seed)``, made on first use: the same numbers, without
    the seeding (a SHA-512 and a state set-up) for the worker stores and entropies a seed
    never draws from (crash-only seeds draw from neither). Not a ``random.Random``
    subclass: creating one seeds its state in C, which is what this avoids. Every
    attribute (``random``, ``randbytes``, ``getstate``...) is the real one's; its methods
    are kept on the instance after their first use. Pass it where a ``random.Random`` is
    expected with :func:`lazy_random`."""

    def __init__(self, seed: str) -> None:
        self._seed = seed

    def __getattr__(self, name: str) -> Any:
        attributes = self.__dict__
        real = attributes.get("_real")
        if real is None:
            real = attributes["_real"] = random.Random(self._seed)
        value = getattr(real, name)
        if callable(value):
            attributes[name] = value
        return value


def lazy_random(seed: str) -> random.Random:
    """A :class:`LazyRandom`, typed as what it stands for."""
    return cast(random.Random, LazyRandom(seed))


@functools.lru_cache(maxsize=64)
def _hooks(planted_bugs: frozenset[str]) -> RuntimeHooks:
    """The workers' hooks for ``planted_bugs`` (a frozen value; the same for every seed)."""
    return RuntimeHooks(planted_bugs=planted_bugs_named(planted_bugs))


class _Stop(Exception):
    pass


class _Slot:
    """One worker position: its current incarnation and its faults."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.incarnation = 0
        self.owner: Owner | None = None
        self.view: FaultyStore | None = None
        self.runtime: Runtime | None = None
        self.finished = False
        self.result: RunResult | None = None
        self.restart_pending = False
        self.offset = 0.0
        self.rate = 1.0
        self.latency: Latency | None = None
        self.errors: Errors | None = None
        self.timeouts: Timeouts | None = None
        self.partitions = 0
        self.partition_event: asyncio.Event | None = None
        self.interrupts: list[Fault] = []  # crashes and pauses, by step
        self.steps = 0

    @property
    def alive(self) -> bool:
        return self.owner is not None and self.owner.alive


class World:
    """One simulated deployment. Use :func:`simulate`.

    Args:
        app: the application.
        params: the launcher's parameters.
        scenario: workers, settings and fault schedule.
        reference: the fault-free run to compare with (None: no output checks).
        planted_bugs: runtime bugs every worker runs with (:class:`PlantedBug` values, for
            the simulator's self-tests).
        trace: hash every step.
        step_budget: steps before the run counts as a livelock.
        liveness_bound: virtual seconds after the faults stop within which the run must
            finish (default: from the lease TTL and the reference's duration).
        preload: streams written before the run starts (a recorded run's effect
            streams, so its executions are handed back their recorded effects).
        feeds: ingest streams that simulated producers append to while the run runs:
            each :class:`Feed`'s batches in their recorded order, at virtual times the
            seed draws (so the seed interleaves them with the workers), sealed at the
            end if the recording was.
        calls: calls from outside the run that a simulated caller makes, one after the
            other in the recorded order, each after a pause the seed draws; the workers
            keep serving the run (a call revives a finished run) until every one returned.
        run: the run's name (a recorded run keeps its own, so the ids, stream names and
            references in its recorded effects stay valid).
        prepared: the store as the harness prepares it for this workload
            (:class:`PreparedStore`), copied in instead of preparing it again.
    """

    def __init__(
        self,
        app: App,
        params: Mapping[str, Any],
        scenario: Scenario,
        *,
        reference: Reference | None = None,
        planted_bugs: frozenset[str] = frozenset(),
        trace: bool = False,
        step_budget: int = DEFAULT_STEP_BUDGET,
        liveness_bound: float | None = None,
        preload: Mapping[str, Sequence[Any]] | None = None,
        feeds: Mapping[str, Feed] | None = None,
        calls: Sequence[ExternalCall] = (),
        run: str = RUN,
        prepared: PreparedStore | None = None,
    ) -> None:
        self.app = app
        self.run_name = run
        self.prepared = prepared
        self.preload = dict(preload or {})
        self.feeds = dict(feeds or {})
        self.calls = tuple(calls)
        self.callers_done = not self.calls
        self.feeding = len(self.feeds)  # simulated producers still appending
        self.params = dict(params)
        self.scenario = scenario
        self.reference = reference
        self.planted_bugs = planted_bugs
        self.hooks = _hooks(planted_bugs)
        self.loop = SimulatedLoop(
            f"perper-simulator/{scenario.seed}/schedule", step_budget=step_budget, trace=trace
        )
        self.store = MemoryStore("memory://simulated")
        #: Segments trims deleted (ephemeral streams), so the reference keeps every item.
        self.trimmed: dict[str, list[tuple[int, int, bytes]]] = {}
        self.slots = [_Slot(i) for i in range(scenario.workers)]
        self.outputs = OutputChecker(reference) if reference is not None else None
        self._reference_segments = reference.segments if reference is not None else {}
        self.fencing = FencingChecker()
        #: Per stream written: the execution it belongs to and how a violation names it.
        self._written: dict[str, tuple[str, str]] = {}
        #: Per stream: the last writer the fencing checker passed there, and its version then.
        self._fence_passed: dict[str, tuple[str, int]] = {}
        self._waiters = self.store._waiters  # the readers waiting, shared by every view
        self.violation: Violation | None = None
        self.fired: list[str] = []
        self.notes: list[str] = []
        self.graveyard: list[Any] = []
        self.producers: list[asyncio.Task[None]] = []
        self.faults_active = True
        self.finished = False
        self._tearing_down = False
        self._done: asyncio.Future[None] | None = None
        ref_time = reference.virtual_time if reference is not None else 0.0
        self.liveness_bound = (
            liveness_bound
            if liveness_bound is not None
            else (max(30.0, 12 * scenario.settings.lease_ttl) + 4 * ref_time)
        )
        self._wire_faults()

    # ----------------------------------------------------------------- faults

    def _wire_faults(self) -> None:
        for fault in self.scenario.schedule:
            if fault.worker >= len(self.slots):
                continue
            slot = self.slots[fault.worker]
            if isinstance(fault, Skew):
                slot.offset, slot.rate = fault.offset, fault.rate
            elif isinstance(fault, Latency):
                slot.latency = fault
            elif isinstance(fault, Errors):
                slot.errors = fault
            elif isinstance(fault, Timeouts):
                slot.timeouts = fault
            elif isinstance(fault, Crash | Pause):
                slot.interrupts.append(fault)
        for slot in self.slots:
            slot.interrupts.sort(key=lambda f: f.step)  # type: ignore[attr-defined]

    def _arm_interrupt(self, slot: _Slot) -> None:
        owner = slot.owner
        assert owner is not None
        while slot.interrupts and slot.interrupts[0].step <= owner.steps:  # type: ignore[attr-defined]
            slot.interrupts.pop(0)  # passed while paused or dead: it never happens
        if slot.interrupts and self.faults_active:
            owner.interrupt_at = slot.interrupts[0].step  # type: ignore[attr-defined]
            owner.on_interrupt = self._interrupt
        else:
            owner.interrupt_at = -1

    def _slot_of(self, owner: Owner) -> _Slot:
        for slot in self.slots:
            if slot.owner is owner:
                return slot
        raise SimulationError(f"no worker for {owner!r}")

    def _interrupt(self, owner: Owner) -> bool:
        slot = self._slot_of(owner)
        fault = slot.interrupts.pop(0)
        skip = False
        if self.faults_active and not self.finished:
            if isinstance(fault, Crash):
                self._crash(slot, fault)
                skip = True
            elif isinstance(fault, Pause) and not owner.paused:
                self._pause(slot, fault)
                skip = True
        if owner.alive:
            self._arm_interrupt(slot)
        return skip

    def _crash(self, slot: _Slot, fault: Crash) -> None:
        owner = slot.owner
        assert owner is not None and slot.view is not None
        now = self.loop.virtual_time
        self.fired.append(f"t={now:.4f}s: {fault.describe()}")
        slot.steps = owner.steps
        self.graveyard.extend(self.loop.kill(owner))
        slot.view.dead = True
        slot.view.refresh()
        slot.restart_pending = True
        when = min(now + fault.restart_after, max(self.scenario.heal_at, now))
        if when != float("inf"):
            self.loop.call_at_virtual(when, self._restart, slot)

    def _pause(self, slot: _Slot, fault: Pause) -> None:
        owner = slot.owner
        assert owner is not None
        now = self.loop.virtual_time
        self.fired.append(f"t={now:.4f}s: {fault.describe()}")
        self.loop.pause(owner)
        self.loop.call_at_virtual(
            min(now + fault.duration, max(self.scenario.heal_at, now)), self.loop.resume, owner
        )

    def _partition_start(self, slot: _Slot, fault: Partition) -> None:
        if not self.faults_active or self.finished:
            return
        self.fired.append(f"t={self.loop.virtual_time:.4f}s: {fault.describe()}")
        slot.partitions += 1
        if slot.partition_event is None:
            slot.partition_event = asyncio.Event()
        if slot.view is not None:
            slot.view.partition = slot.partition_event
            slot.view.refresh()

    def _partition_end(self, slot: _Slot) -> None:
        if slot.partitions == 0:
            return
        slot.partitions -= 1
        if slot.partitions == 0:
            self._heal_partition(slot)

    def _heal_partition(self, slot: _Slot) -> None:
        slot.partitions = 0
        event, slot.partition_event = slot.partition_event, None
        if slot.view is not None:
            slot.view.partition = None
            slot.view.refresh()
        if event is not None:
            event.set()

    def _heal(self) -> None:
        """The faults stop: restart the dead, resume the paused, heal the partitions."""
        self.faults_active = False
        for slot in self.slots:
            if slot.owner is not None:
                slot.owner.interrupt_at = -1
                if slot.owner.paused:
                    self.loop.resume(slot.owner)
            self._heal_partition(slot)
            if slot.view is not None and not slot.view.dead:
                self._calm(slot.view)
            if slot.restart_pending:
                self._restart(slot)
        self.loop.call_at_virtual(
            self.loop.virtual_time + self.liveness_bound, self._liveness_deadline
        )

    @staticmethod
    def _calm(view: FaultyStore) -> None:
        view.latency_rate = view.error_rate = view.timeout_rate = 0.0
        view.refresh()

    # ---------------------------------------------------------------- workers

    def _start_worker(self, slot: _Slot) -> None:
        seed = self.scenario.seed
        name = f"w{slot.index}" + (f".{slot.incarnation}" if slot.incarnation else "")
        owner = Owner(name, offset=slot.offset, rate=slot.rate, steps=slot.steps)
        view = FaultyStore(
            self,
            self.store,
            slot.index,
            name,
            lazy_random(f"perper-simulator/{seed}/store/{name}"),
        )
        if self.faults_active:
            if slot.latency is not None:
                view.latency_rate, view.latency_max = slot.latency.rate, slot.latency.delay
            if slot.errors is not None:
                view.error_rate = slot.errors.rate
            if slot.timeouts is not None:
                view.timeout_rate = slot.timeouts.rate
        view.yield_every_call = self.scenario.yield_every_call
        view.partition = slot.partition_event
        view.partition_give_up = self.scenario.settings.lease_ttl
        view.refresh()
        loop = self.loop
        scenario = self.scenario

        def clock() -> float:
            return EPOCH + loop.time()

        runtime = Runtime(
            view,
            self.app,
            settings=scenario.settings,
            hooks=self.hooks,
            clock=clock,
            entropy=lazy_random(f"perper-simulator/{seed}/entropy/{name}"),
            worker_id=name,
        )
        slot.owner, slot.view, slot.runtime = owner, view, runtime
        slot.finished, slot.result, slot.restart_pending = False, None, False
        self._arm_interrupt(slot)
        loop.spawn(owner, self._worker_main(slot, runtime), name=f"{name} main")

    def _restart(self, slot: _Slot) -> None:
        if not slot.restart_pending or self.finished:
            return
        slot.incarnation += 1
        self.fired.append(f"t={self.loop.virtual_time:.4f}s: restart worker {slot.index}")
        self._start_worker(slot)

    async def _worker_main(self, slot: _Slot, runtime: Runtime) -> None:
        try:
            while True:
                result = await runtime.work(run=self.run_name)
                if self.callers_done or result is None or result.status != DONE:
                    break
                # A caller outside the run still has calls to make: a call revives the
                # finished run, as a 'perper worker' serving it would see.
                await asyncio.sleep(self.scenario.settings.poll_interval)
        except StoreUnavailableError as error:
            self.violate(
                Violation(
                    ViolationKind.STORE_ERROR_NOT_TOLERATED,
                    f"worker {runtime.worker_id} died of a transient store error: {error} (the runtime "
                    "does not retry StoreUnavailableError in its worker loop)",
                ),
                worker=runtime.worker_id,
            )
            return
        except Exception as error:
            self.violate(
                Violation(
                    ViolationKind.WORKER_ERROR,
                    f"worker {runtime.worker_id} died: {type(error).__name__}: {error}",
                ),
                worker=runtime.worker_id,
            )
            return
        slot.finished, slot.result = True, result
        if result is not None and result.status == FAILED:
            first = result.failures[0] if result.failures else None
            text = error_summary(first.error) if first else "(no failure recorded)"
            self.violate(
                Violation(
                    ViolationKind.RUN_STATUS,
                    f"the run failed: {first.execution if first else '?'}: {text}",
                ),
                worker=runtime.worker_id,
            )
            return
        self._maybe_done()

    def _maybe_done(self) -> None:
        alive = [slot for slot in self.slots if slot.alive]
        if (
            alive
            and self.callers_done
            and not self.feeding
            and all(slot.finished for slot in alive)
            and not self.finished
        ):
            self.finished = True
            if self._done is not None and not self._done.done():
                self._done.set_result(None)

    def _liveness_deadline(self) -> None:
        if self.finished or self.violation is not None:
            return
        from perper import codec

        unfinished = []
        leases = self.store._meta.get("leases", {})
        for key, (_, data) in sorted(self.store._meta.get("executions", {}).items()):
            record = codec.unpack(data)
            if record["status"] == DONE:
                continue
            stream = self.store._streams.get(key)
            ref_head = self.reference.heads.get(key) if self.reference else None
            lease = codec.unpack(leases[key][1]) if key in leases else None
            unfinished.append(
                f"{key} {record['status']}, {stream.head if stream else 0}"
                + (f"/{ref_head}" if ref_head is not None else "")
                + " items"
                + (f", lease {lease['owner']}@{lease['epoch']}" if lease else ", no lease")
            )
        self.violate(
            Violation(
                ViolationKind.LIVENESS,
                f"the run did not finish within {self.liveness_bound:g}s after the faults stopped; "
                f"unfinished: {'; '.join(unfinished) or 'none'}; waiting: "
                + "; ".join(
                    site for site in self.loop.pending_sites() if "World._main" not in site
                )[:1500],
            )
        )

    # --------------------------------------------------------------- checkers

    def violate(self, violation: Violation, *, worker: str | None = None) -> None:
        if self.violation is not None or self._tearing_down:
            return
        current = self.loop.current_owner
        self.violation = Violation(
            violation.kind,
            violation.message + self._likely_cause(violation),
            violation.stream,
            violation.seq,
            violation.expected,
            violation.actual,
            self.loop.steps,
            self.loop.virtual_time,
            worker or violation.worker or (current.name if current is not ROOT else None),
        )
        self.loop.stop()

    def _likely_cause(self, violation: Violation) -> str:
        """Name the function that wrote the differing stream and, if its source shows
        one, a direct clock/entropy read or a hash-order dependence in it."""
        if violation.kind not in _DIVERGENCE_KINDS or violation.stream is None:
            return ""
        from perper import codec
        from simulator.causes import likely_causes

        entry = self.store._meta.get("executions", {}).get(violation.stream)
        if entry is None:
            return ""
        name = codec.unpack(entry[1]).get("function", "")
        text = f"\n  function: {name}"
        function = self.app.functions.get(name)
        causes = likely_causes(function.fn) if function is not None else []
        if causes:
            text += f"\n  likely cause, in {name}:" + "".join(
                "\n    " + cause for cause in causes[:5]
            )
        return text

    def on_segment(self, view: FaultyStore, stream: str, seq: int, count: int, data: bytes) -> None:
        if stream in self._waiters:
            view.notify(stream)  # readers learn of a write even if its caller times out
        outputs = self.outputs
        if outputs is not None:
            # The usual case without a call: the reference's encoding of these items
            # (OutputChecker.on_segment builds and keeps it for a segment it can
            # compare so, never for an internal or effect-dependent stream) and equal
            # bytes; anything else is the checker's.
            packed = self._reference_segments.get((stream, seq, count))
            if (
                packed is None
                or len(data) != SEGMENT_HEADER + len(packed)
                or not data.endswith(packed)
            ):
                found = outputs.on_segment(stream, seq, data, count)
                if found is not None:
                    self.violate(found, worker=view.worker_id)
                    return
        names = self._written.get(stream)
        if names is None:
            names = self._written[stream] = (
                stream[: -len(EFFECTS_SUFFIX)] if stream.endswith(EFFECTS_SUFFIX) else stream,
                f"stream {stream}" if "#" not in stream else stream,
            )
        writer = view.worker_id
        fencing = self.fencing
        passed = self._fence_passed.get(stream)
        if passed is not None and passed[1] == fencing.version and passed[0] == writer:
            return  # the fencing checker passed this writer here and holds the same since
        found = fencing.on_write(names[0], names[1], writer)
        if found is not None:
            self.violate(found, worker=writer)
            return
        self._fence_passed[stream] = (writer, fencing.version)

    def on_seal(self, view: FaultyStore, stream: str) -> None:
        self._fenced_write(view, stream, f"seal of {stream}")

    def on_meta(self, view: FaultyStore, table: str, key: str, value: Any) -> None:
        if table == "leases":
            self.fencing.on_lease(key, value)
        elif table == "checkpoints":
            self._fenced_write(view, key, f"checkpoint of {key}")
        elif table == "executions":
            found = failed_execution(value)
            if found is not None:
                self.violate(found, worker=view.worker_id)

    def _fenced_write(self, view: FaultyStore, stream: str, what: str) -> None:
        execution = stream[: -len(EFFECTS_SUFFIX)] if stream.endswith(EFFECTS_SUFFIX) else stream
        found = self.fencing.on_write(execution, what, view.worker_id)
        if found is not None:
            self.violate(found, worker=view.worker_id)

    def note_store_error(self, worker: int, what: str) -> None:
        self.fired.append(
            f"t={self.loop.virtual_time:.4f}s: store error for worker {worker} in {what}"
        )

    # -------------------------------------------------------------------- run

    async def start(self) -> bool:
        """Record the run, start the workers and arm the fault schedule; False if the run
        was already done."""
        self._done = self.loop.create_future()
        if self.prepared is not None:
            self.prepared.restore(self.store)
        elif await prepare_store(self.store, self.app, self.params, self.preload, self.run_name):
            return False
        for stream, feed in sorted(self.feeds.items()):
            if feed.index is not None:
                await self.store.declare_index(stream, feed.index)
        for slot in self.slots:
            self._start_worker(slot)
        for stream, feed in sorted(self.feeds.items()):
            self.producers.append(self.loop.create_task(self._produce(stream, feed)))
        if self.calls:
            self.producers.append(self.loop.create_task(self._call_from_outside()))
        for fault in self.scenario.schedule:
            if isinstance(fault, Partition) and fault.worker < len(self.slots):
                slot = self.slots[fault.worker]
                start = fault.start
                if start < self.scenario.heal_at:
                    self.loop.call_at_virtual(start, self._partition_start, slot, fault)
                    self.loop.call_at_virtual(
                        min(start + fault.duration, self.scenario.heal_at),
                        self._partition_end,
                        slot,
                    )
        if self.scenario.heal_at != float("inf"):
            self.loop.call_at_virtual(self.scenario.heal_at, self._heal)
        return True

    async def _produce(self, stream: str, feed: Feed) -> None:
        """A simulated producer: append ``feed``'s batches in order, a seeded pause
        before each, then seal the stream if the recording did."""
        pauses = random.Random(f"{self.scenario.seed}/feed/{stream}")
        head = feed.first
        try:
            for batch in feed.batches:
                await asyncio.sleep(pauses.random() * feed.spacing)
                head = await self.store.append(stream, head, batch)
            if feed.sealed:
                await self.store.seal(stream)
        finally:
            # The run may have finished already (nothing reads this stream, or nothing
            # reads it to its end): the world ends once the producers have written what
            # production's did, which the checkers compare.
            self.feeding -= 1
            self._maybe_done()

    async def _call_from_outside(self) -> None:
        """The simulated outside caller: make the recorded calls in their order, a
        seeded pause before each; an error outcome is the callee's and a destroyed
        instance refuses the call (the checkers compare what was written with the
        recorded run)."""
        pauses = random.Random(f"{self.scenario.seed}/calls")
        for call in self.calls:
            await asyncio.sleep(pauses.random() * 0.05)
            with contextlib.suppress(CallFailedError, AgentDestroyedError):
                await outside_call(
                    self.store,
                    call.run,
                    call.function,
                    call.args,
                    dict(call.kwargs),
                    key=call.key,
                    timeout=None,
                )
        self.callers_done = True

    async def _main(self) -> None:
        if await self.start():
            assert self._done is not None
            await self._done

    def run(self) -> SimulationResult:
        started = time.perf_counter()
        gc_was_enabled = gc.isenabled()
        gc.disable()  # collection points depend on the process's history: keep them out
        try:
            try:
                self.loop.run_until_complete(self._main())
            except StepBudgetExceeded as error:
                self.violate(Violation(ViolationKind.STEP_BUDGET, str(error)))
            except Deadlock as error:
                self.violate(Violation(ViolationKind.DEADLOCK, str(error)))
            except SimulationError:
                if self.violation is None:
                    raise
            if self.violation is None:
                self._final_checks()
            steps, vtime = self.loop.steps, self.loop.virtual_time
            trace_hash = self.loop.trace_hash
            if self.loop.refused:
                self.notes.append("refused: " + "; ".join(self.loop.refused[:5]))
        finally:
            self._tearing_down = True
            for slot in self.slots:
                if slot.view is not None:
                    slot.view.dead = True
                    slot.view.refresh()
            self.loop.close()
            self.graveyard.clear()
            # Readers still waiting when the run ended wait on the closed loop forever;
            # their futures would keep the whole world reachable from the result's store.
            self.store._waiters.clear()
            if gc_was_enabled:
                gc.enable()
        return SimulationResult(
            seed=self.scenario.seed,
            scenario=self.scenario,
            violation=self.violation,
            fired=tuple(self.fired),
            steps=steps,
            virtual_time=vtime,
            wall_time=time.perf_counter() - started,
            trace_hash=trace_hash,
            notes=tuple(self.notes),
            store=self.store,
            worker_steps=tuple(slot.owner.steps if slot.owner else 0 for slot in self.slots),
        )

    def _final_checks(self) -> None:
        store = self.store
        heads = {
            name: s.head
            for name, s in store._streams.items()
            # the run and its agent instances
            if name.startswith((self.run_name + "/", self.run_name + "."))
        }
        sealed = {name for name, s in store._streams.items() if s.sealed}
        if self.outputs is not None:
            found = self.outputs.final(heads, sealed)
            if found is not None:
                self.violate(found)
                return
        runs = store._meta.get("runs", {})
        if self.reference is not None and self.run_name in runs:
            from perper import codec

            status = codec.unpack(runs[self.run_name][1])["status"]
            if status != self.reference.run_status:
                self.violate(
                    Violation(
                        ViolationKind.RUN_STATUS,
                        f"the run ended {status!r}; the fault-free run ended "
                        f"{self.reference.run_status!r}",
                    )
                )
                return
        if self.reference is not None and self.reference.tainted:
            self._check_replay()

    def _check_replay(self) -> None:
        """Effect-dependent streams: replaying the final log must reproduce them."""
        from perper.replay import replay_async

        assert self.reference is not None

        async def check() -> Any:
            return await replay_async(self.store, self.app, run=self.run_name, freeze_clock=False)

        loop = SimulatedLoop(0)
        try:
            results = loop.run_until_complete(check())
        finally:
            loop.close()
        for result in results:
            if result.execution in self.reference.tainted and not result.ok:
                self.violate(
                    Violation(
                        ViolationKind.REPLAY_DIVERGENCE,
                        f"replaying {result.execution!r} over its recorded inputs and effects does "
                        f"not reproduce its output: {result.describe()}",
                        stream=result.execution,
                    )
                )
                return


def simulate(
    app: App,
    params: Mapping[str, Any],
    scenario: Scenario,
    *,
    reference: Reference | None = None,
    planted_bugs: frozenset[str] = frozenset(),
    trace: bool = False,
    step_budget: int = DEFAULT_STEP_BUDGET,
    preload: Mapping[str, Sequence[Any]] | None = None,
    feeds: Mapping[str, Feed] | None = None,
    calls: Sequence[ExternalCall] = (),
    run: str = RUN,
    prepared: PreparedStore | None = None,
) -> SimulationResult:
    """Run one simulated deployment of ``app`` and check it against ``reference``."""
    # The collector stays off until the world is garbage (World.run keeps it off while it
    # runs): its first collection then frees the world's cycles at once instead of
    # promoting them, still alive, to an older generation that is collected seldom.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return World(
            app,
            params,
            scenario,
            reference=reference,
            planted_bugs=planted_bugs,
            trace=trace,
            step_budget=step_budget,
            preload=preload,
            feeds=feeds,
            calls=calls,
            run=run,
            prepared=prepared,
        ).run()
    finally:
        if gc_was_enabled:
            gc.enable()


def reference_run(
    app: App,
    params: Mapping[str, Any],
    *,
    step_budget: int = DEFAULT_STEP_BUDGET,
    preload: Mapping[str, Sequence[Any]] | None = None,
    feeds: Mapping[str, Feed] | None = None,
    calls: Sequence[ExternalCall] = (),
    run: str = RUN,
) -> Reference:
    """Run ``app`` fault-free on one simulated worker and record what it produced.

    Raises:
        ConfigError: the app fails even without faults (nothing to compare with).
    """
    defaults = RuntimeSettings()  # the fault-free run uses the runtime's own defaults
    scenario = Scenario(
        seed=0,
        workers=1,
        kinds=(),
        settings=defaults,
        heal_at=0.0,
    )
    world = World(
        app,
        params,
        scenario,
        reference=None,
        step_budget=step_budget,
        preload=preload,
        feeds=feeds,
        calls=calls,
        run=run,
    )
    result = world.run()
    if result.violation is not None:
        raise ConfigError(
            f"app {app.name!r} fails without any fault, so there is nothing to compare with:\n"
            + result.violation.describe()
        )
    loop = SimulatedLoop(0)
    try:
        ref = loop.run_until_complete(Reference.from_store(world.store, run, trimmed=world.trimmed))
    finally:
        loop.close()
    ref.steps, ref.virtual_time = result.steps, result.virtual_time
    if ref.run_status != DONE:
        raise ConfigError(f"app {app.name!r} ends its fault-free run {ref.run_status!r}, not done")
    return ref
