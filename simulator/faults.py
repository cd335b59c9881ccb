"""Faults: what can go wrong in a simulated deployment, drawn from a seed, and the store
view through which every worker reaches the shared store.

A :class:`Scenario` is everything one seed decides: how many workers, the runtime's
settings, which fault kinds are on (swarm testing: each seed enables a random subset,
at random rates) and the **fault schedule** — a tuple of :class:`Fault` events that can
be printed in words, written as a compact spec (``--schedule``), and shrunk.

:class:`FaultyStore` wraps the one shared :class:`~perper.store.memory.MemoryStore`
per worker, so per-worker faults (partitions, latency, errors) stay per worker.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from perper.errors import ConfigError, StoreUnavailableError
from perper.runtime.settings import RuntimeSettings
from perper.store.base import LogStore, Meta, QueryRow, StreamInfo
from perper.store.index import IndexSpec
from perper.store.memory import MemoryStore

if TYPE_CHECKING:
    from simulator.world import World

#: Every fault kind, in the order they are described.
FAULT_KINDS = ("crash", "lease-expiry", "partition", "latency", "skew", "errors", "timeouts")

#: The kinds on unless ``--faults`` says otherwise: all of them.
DEFAULT_FAULTS = FAULT_KINDS

_ALIASES = {
    "pause": "lease-expiry",
    "partitions": "partition",
    "crashes": "crash",
    "error": "errors",
    "timeout": "timeouts",
    "clock-skew": "skew",
    "all": "all",
}


def parse_fault_kinds(text: str) -> tuple[str, ...]:
    """``"crash,latency"`` -> ``("crash", "latency")``; ``"all"``, ``"none"`` too.

    Raises:
        ConfigError: an unknown kind (the message lists the known ones).
    """
    text = text.strip()
    if text in ("", "none"):
        return ()
    kinds: list[str] = []
    for raw in text.split(","):
        name = _ALIASES.get(raw.strip(), raw.strip())
        if name == "all":
            kinds.extend(FAULT_KINDS)
            continue
        if name not in FAULT_KINDS:
            raise ConfigError(
                f"unknown fault kind {raw.strip()!r}: use a comma-separated list of "
                f"{', '.join(FAULT_KINDS)} (or 'all', 'none')"
            )
        kinds.append(name)
    return tuple(k for k in FAULT_KINDS if k in kinds)


# ----------------------------------------------------------------------- events


@dataclass(frozen=True)
class Fault:
    """One event of a fault schedule. Workers are numbered from 0; steps are the
    worker's own scheduling steps (its restarts continue the count)."""

    kind: str
    worker: int

    def describe(self) -> str:
        raise NotImplementedError

    def spec(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Crash(Fault):
    """Kill the worker (kill -9) at its step ``step``; restart it ``restart_after`` virtual
    seconds later as a fresh worker."""

    step: int = 1
    restart_after: float = 0.0

    def describe(self) -> str:
        return (
            f"crash worker {self.worker} at its step {self.step}, "
            f"restart it {self.restart_after:.3g}s later"
        )

    def spec(self) -> str:
        return f"crash:{self.worker}:{self.step}:{self.restart_after:g}"


@dataclass(frozen=True)
class Pause(Fault):
    """Stop the worker (SIGSTOP) at its step ``step`` for ``duration`` seconds — longer
    than the lease TTL, so its leases expire and are taken over."""

    step: int = 1
    duration: float = 1.0

    def describe(self) -> str:
        return (
            f"pause worker {self.worker} at its step {self.step} for {self.duration:.3g}s "
            "(its leases expire)"
        )

    def spec(self) -> str:
        return f"pause:{self.worker}:{self.step}:{self.duration:g}"


@dataclass(frozen=True)
class Partition(Fault):
    """Cut the worker off the store from ``start`` for ``duration`` seconds. Its store
    calls wait for the heal, as a client retries a lost connection; one that has waited a
    lease TTL gives up with :class:`~perper.errors.StoreUnavailableError`, as
    IgniteStore does after its bounded retry."""

    start: float = 0.0
    duration: float = 1.0

    def describe(self) -> str:
        return (
            f"partition worker {self.worker} from the store at {self.start:.3g}s "
            f"for {self.duration:.3g}s"
        )

    def spec(self) -> str:
        return f"partition:{self.worker}:{self.start:g}:{self.duration:g}"


@dataclass(frozen=True)
class Latency(Fault):
    """Delay a share ``rate`` of the worker's store calls, before and after the call
    (the call may land while the caller still waits), by up to ``delay`` seconds."""

    rate: float = 0.5
    delay: float = 0.01

    def describe(self) -> str:
        return (
            f"delay {self.rate:.0%} of worker {self.worker}'s store calls by up to "
            f"{self.delay:.3g}s"
        )

    def spec(self) -> str:
        return f"latency:{self.worker}:{self.rate:g}:{self.delay:g}"


@dataclass(frozen=True)
class Skew(Fault):
    """The worker's clock reads ``offset + rate * t`` (loop time and ctx.now())."""

    offset: float = 0.0
    rate: float = 1.0

    def describe(self) -> str:
        return (
            f"skew worker {self.worker}'s clock by {self.offset:+.3g}s, running at {self.rate:.3g}x"
        )

    def spec(self) -> str:
        return f"skew:{self.worker}:{self.offset:g}:{self.rate:g}"


@dataclass(frozen=True)
class Errors(Fault):
    """Fail a share ``rate`` of the worker's store calls with StoreUnavailableError
    (before they reach the store)."""

    rate: float = 0.02

    def describe(self) -> str:
        return f"fail {self.rate:.1%} of worker {self.worker}'s store calls (StoreUnavailableError)"

    def spec(self) -> str:
        return f"errors:{self.worker}:{self.rate:g}"


@dataclass(frozen=True)
class Timeouts(Fault):
    """Time out a share ``rate`` of the worker's writes *after* they landed: the caller
    gets StoreUnavailableError and cannot know the write happened."""

    rate: float = 0.02

    def describe(self) -> str:
        return (
            f"time out {self.rate:.1%} of worker {self.worker}'s writes after they "
            "landed (unknown outcome)"
        )

    def spec(self) -> str:
        return f"timeouts:{self.worker}:{self.rate:g}"


_SPEC_TYPES: dict[str, tuple[type[Fault], tuple[tuple[str, Callable[[str], Any]], ...]]] = {
    "crash": (Crash, (("step", int), ("restart_after", float))),
    "pause": (Pause, (("step", int), ("duration", float))),
    "partition": (Partition, (("start", float), ("duration", float))),
    "latency": (Latency, (("rate", float), ("delay", float))),
    "skew": (Skew, (("offset", float), ("rate", float))),
    "errors": (Errors, (("rate", float),)),
    "timeouts": (Timeouts, (("rate", float),)),
}


def format_schedule(schedule: Sequence[Fault]) -> str:
    """The compact form ``--schedule`` reads: ``crash:1:17:0.5,latency:0:0.3:0.01``."""
    return ",".join(fault.spec() for fault in schedule) or "none"


def parse_schedule(text: str) -> tuple[Fault, ...]:
    """Read :func:`format_schedule`'s form.

    Raises:
        ConfigError: a malformed event.
    """
    if text.strip() in ("", "none"):
        return ()
    faults: list[Fault] = []
    for token in text.split(","):
        parts = token.strip().split(":")
        entry = _SPEC_TYPES.get(parts[0])
        if entry is None or len(parts) != 2 + len(entry[1]):
            raise ConfigError(
                f"cannot read fault {token!r}: write e.g. crash:WORKER:STEP:RESTART_AFTER, "
                "pause:WORKER:STEP:SECONDS, partition:WORKER:START:SECONDS, "
                "latency:WORKER:RATE:MAX_DELAY, skew:WORKER:OFFSET:RATE, errors:WORKER:RATE, "
                "timeouts:WORKER:RATE"
            )
        cls, fields = entry
        try:
            values = {
                name: convert(raw) for (name, convert), raw in zip(fields, parts[2:], strict=True)
            }
            kind = "lease-expiry" if parts[0] == "pause" else parts[0]
            faults.append(cls(kind=kind, worker=int(parts[1]), **values))
        except ValueError as error:
            raise ConfigError(f"cannot read fault {token!r}: {error}") from None
    return tuple(faults)


# --------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Scenario:
    """Everything one seed decides (see :func:`derive_scenario`)."""

    seed: int
    workers: int
    kinds: tuple[str, ...]
    #: The runtime settings every worker of this scenario runs with.
    settings: RuntimeSettings
    heal_at: float
    schedule: tuple[Fault, ...] = field(default=())
    yield_every_call: bool = False

    def describe(self) -> list[str]:
        """The derived parameters, one ``name: value`` line each."""
        return [
            f"workers: {self.workers}",
            f"fault kinds: {', '.join(self.kinds) or 'none'}",
            f"lease_ttl: {self.settings.lease_ttl:g}s, "
            f"poll_interval: {self.settings.poll_interval:g}s",
            f"batch_size: {self.settings.batch_size}, "
            f"flush_delay: {self.settings.flush_delay:g}s, "
            f"checkpoint_every: {self.settings.checkpoint_every}",
            f"faults stop at: {self.heal_at:g}s (then every worker is restarted and healed)",
        ]

    def with_schedule(self, schedule: Sequence[Fault]) -> Scenario:
        return replace(self, schedule=tuple(schedule))


#: The run length (items of its longest stream) the checkpoint and batch draws are made
#: for; a longer run scales them by :func:`cadence_scale`.
CADENCE_ITEMS = 100


def cadence_scale(items: int) -> int:
    """What a run whose longest stream holds ``items`` items multiplies its drawn
    ``checkpoint_every`` and ``batch_size`` by: 1 up to :data:`CADENCE_ITEMS` items (every
    such run draws exactly what it always did), then ``ceil(items / CADENCE_ITEMS)``.

    A 10,000-item log drawn ``checkpoint_every=1`` checkpoints every 100 items, about
    100 times, as a 100-item run does every item: what recovery testing needs is crashes
    and resumes at many varied points, not one checkpoint of the whole state per item.
    """
    return max(1, -(-items // CADENCE_ITEMS))


@functools.lru_cache(maxsize=4096, typed=True)
def _drawn_settings(
    lease_ttl: float,
    batch_size: int,
    flush_delay: float,
    checkpoint_every: int,
    poll_interval: float,
) -> RuntimeSettings:
    """The settings a seed draws, one frozen value per combination: the draws repeat (a
    few hundred combinations per run length) and building a RuntimeSettings, with its
    checks, costs a fifth of deriving a scenario."""
    return RuntimeSettings(
        lease_ttl=lease_ttl,
        batch_size=batch_size,
        flush_delay=flush_delay,
        checkpoint_every=checkpoint_every,
        poll_interval=poll_interval,
    )


def derive_scenario(
    seed: int,
    *,
    kinds: Sequence[str] = DEFAULT_FAULTS,
    workers: int | None = None,
    reference_steps: int = 100,
    reference_items: int = 0,
    swarm: bool = True,
) -> Scenario:
    """Draw a scenario from ``seed``: settings, the enabled subset of ``kinds`` and a
    fault schedule. The same arguments always give the same scenario.

    Args:
        seed: the seed.
        kinds: the fault kinds a seed may enable.
        workers: fix the number of workers (default: 1 to 4, drawn).
        reference_steps: steps of the fault-free run, to aim crashes and pauses inside
            the run rather than after it.
        reference_items: items of the fault-free run's longest stream: a run longer
            than :data:`CADENCE_ITEMS` items checkpoints and flushes at a cadence scaled
            to its length (see :func:`cadence_scale`).
        swarm: enable a random subset of ``kinds`` (True) or all of them.
    """
    rng = random.Random(f"perper-simulator/{seed}/scenario")
    n = workers if workers is not None else rng.choice((1, 2, 2, 3, 3, 4))
    if swarm and kinds:
        enabled = tuple(k for k in kinds if rng.random() < 0.6)
        if not enabled:
            enabled = (rng.choice(tuple(kinds)),)
    else:
        enabled = tuple(kinds)
    ttl = rng.choice((0.5, 1.0, 2.0))
    batch_size = rng.choice((1, 2, 5, 1000))
    flush_delay = rng.choice((0.0, 0.01, 0.05))
    # Drawn for a run of CADENCE_ITEMS items; a longer one scales them (as many
    # checkpoints and flushes per run, at as varied points) instead of taking one per item.
    scale = cadence_scale(reference_items)
    batch_size *= scale
    checkpoint_every = rng.choice((1, 3, 10, 1000)) * scale
    poll = rng.choice((0.02, 0.05))
    heal_at = round(rng.uniform(2.0, 6.0) * ttl, 3)
    reach = max(20, 2 * reference_steps)
    schedule: list[Fault] = []
    if "crash" in enabled:
        for _ in range(rng.choice((1, 1, 2, 3))):
            schedule.append(
                Crash(
                    "crash",
                    rng.randrange(n),
                    rng.randint(1, reach),
                    round(rng.choice((0.0, rng.uniform(0.0, 2.0 * ttl))), 3),
                )
            )
    if "lease-expiry" in enabled and n > 1:
        for _ in range(rng.choice((1, 1, 2))):
            schedule.append(
                Pause(
                    "lease-expiry",
                    rng.randrange(n),
                    rng.randint(1, reach),
                    round(rng.uniform(1.2, 3.0) * ttl, 3),
                )
            )
    if "partition" in enabled:
        for _ in range(rng.choice((1, 2))):
            schedule.append(
                Partition(
                    "partition",
                    rng.randrange(n),
                    round(rng.uniform(0.0, heal_at), 3),
                    round(rng.uniform(0.1, 2.5) * ttl, 3),
                )
            )
    if "latency" in enabled:
        for worker in range(n):
            if rng.random() < 0.7:
                schedule.append(
                    Latency(
                        "latency",
                        worker,
                        rng.choice((0.1, 0.3, 0.7, 1.0)),
                        rng.choice((0.0, 0.001, 0.01, 0.1)),
                    )
                )
    if "skew" in enabled:
        for worker in range(n):
            if rng.random() < 0.7:
                schedule.append(
                    Skew(
                        "skew",
                        worker,
                        round(rng.uniform(-100.0, 100.0), 3),
                        round(rng.choice((rng.uniform(0.5, 2.0), 1.0)), 3),
                    )
                )
    if "errors" in enabled:
        for worker in range(n):
            if rng.random() < 0.5:
                schedule.append(Errors("errors", worker, rng.choice((0.01, 0.05))))
    if "timeouts" in enabled:
        for worker in range(n):
            if rng.random() < 0.5:
                schedule.append(Timeouts("timeouts", worker, rng.choice((0.01, 0.05))))
    return Scenario(
        seed=seed,
        workers=n,
        kinds=enabled,
        settings=_drawn_settings(ttl, batch_size, flush_delay, checkpoint_every, poll),
        heal_at=heal_at,
        schedule=tuple(schedule),
    )


# ------------------------------------------------------------------ store view


class WorkerDead(BaseException):
    """Raised by a killed worker's store view (only reachable during teardown)."""


class FaultyStore(LogStore):
    """One worker's view of the shared store, with that worker's faults.

    Latency is ``await asyncio.sleep(d)`` in virtual time before and/or after a call; a
    partition makes calls wait for the heal, for ``partition_give_up`` seconds at most,
    then raise :class:`~perper.errors.StoreUnavailableError`; errors raise
    :class:`~perper.errors.StoreUnavailableError` before the call; timeouts perform a
    write and then raise it. Writes are reported to the world's checkers.
    """

    # A shared remote store: a reader cannot rely on hearing of every write in time
    # (latency after a call hands back a stale answer), so it polls, as SQLiteStore and
    # IgniteStore do -- while its view has latency on (see refresh). Without it every
    # write through any view, landed or timed out, wakes the readers of its stream, so
    # a reader need not poll (a poll timer per wait is what the many waits of a seed
    # would cost for nothing).
    _poll_interval_min: float | None = 0.001
    _poll_interval_max = 0.1

    def __init__(
        self, world: World, backing: MemoryStore, worker: int, worker_id: str, rng: random.Random
    ) -> None:
        super().__init__()
        self.url = f"simulated://w{worker}"
        self._world = world
        self._backing = backing
        # One set of waiters for all views: an append through any view wakes every reader.
        self._waiters = backing._waiters
        self.worker = worker
        self.worker_id = worker_id
        self._rng = rng
        self.dead = False
        self.latency_rate = 0.0
        self.latency_max = 0.0
        self.error_rate = 0.0
        self.timeout_rate = 0.0
        self.yield_every_call = False
        self.partition: asyncio.Event | None = None
        self.partition_give_up = 1.0
        self.faulty = False

    #: Calls that, with no fault on, go straight to the shared store (nothing to report
    #: to the checkers): bound on the instance, so the hot path skips a coroutine layer
    #: (and a read pass takes MemoryStore's one-generator read_batches).
    _DIRECT = (
        "info",
        "meta_get",
        "meta_scan",
        "streams",
        "scan_segments",
        "read_batches",
        "read",
        "segment_now",
        "write_waiter",
        "info_now",
        "meta_get_shared",
        "meta_scan_shared",
    )

    def refresh(self) -> None:
        """Recompute whether any per-call fault is on (the fast path skips the gate)."""
        self.faulty = bool(
            self.dead
            or self.partition is not None
            or self.latency_rate
            or self.error_rate
            or self.timeout_rate
            or self.yield_every_call
        )
        self._poll_interval_min = 0.001 if self.latency_rate else None
        attributes = self.__dict__
        if self.faulty:
            for name in self._DIRECT:
                attributes.pop(name, None)
            attributes.pop("_write_now", None)  # LogStore.append_now declines
            attributes.pop("_segment_at_now", None)
        else:
            for name in self._DIRECT:
                attributes[name] = getattr(self._backing, name)
            attributes["_write_now"] = self._write_faultless
            attributes["_segment_at_now"] = self._backing._segment_at_now

    def _write_faultless(self, stream: str, seq: int, count: int, data: bytes, epoch: int) -> bool:
        # write_segment's path with no fault on, as LogStore.append_now's write.
        self._backing.write_segment_now(stream, seq, count, data, epoch)
        self._world.on_segment(self, stream, seq, count, data)
        return True

    async def _gate(self, what: str, *, write: bool = False) -> None:
        if self.dead:
            raise WorkerDead()
        if self.yield_every_call:
            await asyncio.sleep(0)
        if self.partition is not None:
            await self._wait_out_partition(what)
        if self.latency_rate and self._rng.random() < self.latency_rate:
            await asyncio.sleep(self._rng.random() * self.latency_max)
        if self.error_rate and self._rng.random() < self.error_rate:
            self._world.note_store_error(self.worker, what)
            raise StoreUnavailableError(f"simulated store error in {what} (worker {self.worker})")

    async def _wait_out_partition(self, what: str) -> None:
        try:
            async with asyncio.timeout(self.partition_give_up):
                while self.partition is not None:  # healed, then cut off again: wait on
                    await self.partition.wait()
        except TimeoutError:
            self._world.note_store_error(self.worker, what + " (partitioned)")
            raise StoreUnavailableError(
                f"simulated partition: worker {self.worker} could not reach the store for "
                f"{what} (gave up after {self.partition_give_up:g}s)"
            ) from None

    async def _after(self, what: str, *, write: bool = False) -> None:
        if self.dead:
            raise WorkerDead()
        if self.latency_rate and self._rng.random() < self.latency_rate:
            await asyncio.sleep(self._rng.random() * self.latency_max)
        if write and self.timeout_rate and self._rng.random() < self.timeout_rate:
            self._world.note_store_error(self.worker, what + " (timed out after landing)")
            raise StoreUnavailableError(
                f"simulated timeout in {what} (worker {self.worker}): the write may have landed"
            )

    # ------------------------------------------------------------- primitives

    async def info(self, stream: str) -> StreamInfo:
        if self.faulty:
            await self._gate("info")
            result = await self._backing.info(stream)
            await self._after("info")
            return result
        return await self._backing.info(stream)

    def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        if self.faulty:
            return self._faulty_segments(stream, start, stop)
        return self._backing.scan_segments(stream, start, stop)

    async def _faulty_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        await self._gate("read")
        segments = [s async for s in self._backing.scan_segments(stream, start, stop)]
        await self._after("read")
        for segment in segments:
            yield segment

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        if not self.faulty:  # the usual path: the shared store's write, without awaiting it
            self._backing.write_segment_now(stream, seq, count, data, epoch)
            self._world.on_segment(self, stream, seq, count, data)
            return
        await self._gate("append", write=True)
        await self._backing.write_segment(stream, seq, count, data, epoch)
        self._world.on_segment(self, stream, seq, count, data)
        await self._after("append", write=True)

    async def write_seal(self, stream: str, epoch: int) -> bool:
        if self.faulty:
            await self._gate("seal", write=True)
        sealed = await self._backing.write_seal(stream, epoch)
        if sealed:
            self.notify(stream)  # readers learn of the seal even if its caller times out
            self._world.on_seal(self, stream)
        if self.faulty:
            await self._after("seal", write=True)
        return sealed

    # Ingest keys (perper.Producer): the key primitives fault like the other reads and
    # writes, and a keyed segment is reported to the checkers as any other segment.

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        if self.faulty:
            await self._gate("lookup_keys")
            result = await self._backing.lookup_keys(stream, keys)
            await self._after("lookup_keys")
            return result
        return await self._backing.lookup_keys(stream, keys)

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        if self.faulty:
            await self._gate("segment_keys")
            result = await self._backing.segment_keys(stream, start, stop)
            await self._after("segment_keys")
            return result
        return await self._backing.segment_keys(stream, start, stop)

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        if self.faulty:
            await self._gate("append_keyed", write=True)
        await self._backing.write_keyed_segment(stream, seq, count, data, keys)
        self._world.on_segment(self, stream, seq, count, data)
        if self.faulty:
            await self._after("append_keyed", write=True)

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        if self.faulty:
            await self._gate("streams")
        return await self._backing.streams(prefix=prefix)

    async def meta_get(self, table: str, key: str) -> Meta | None:
        if self.faulty:
            await self._gate("meta_get")
            result = await self._backing.meta_get(table, key)
            await self._after("meta_get")
            return result
        return await self._backing.meta_get(table, key)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        if self.faulty:
            await self._gate("meta_cas", write=True)
        result = await self._backing.meta_cas(table, key, value, version=version)
        if result is not None:
            self._world.on_meta(self, table, key, value)
        if self.faulty:
            await self._after("meta_cas", write=True)
        return result

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        if self.faulty:
            await self._gate("meta_scan")
            result = await self._backing.meta_scan(table, prefix=prefix)
            await self._after("meta_scan")
            return result
        return await self._backing.meta_scan(table, prefix=prefix)

    # Retention (docs/retention.md): trims and deletes are writes like any other.

    async def first_seq(self, stream: str) -> int:
        if self.faulty:
            await self._gate("first_seq")
            result = await self._backing.first_seq(stream)
            await self._after("first_seq")
            return result
        return await self._backing.first_seq(stream)

    async def trim(self, stream: str, before_seq: int) -> int:
        if self.faulty:
            await self._gate("trim", write=True)
        first = await self._backing.first_seq(stream)
        doomed = [
            segment
            async for segment in self._backing.scan_segments(stream, first, before_seq)
            if segment[0] + segment[1] <= before_seq
        ]
        result = await self._backing.trim(stream, before_seq)
        self._world.trimmed.setdefault(stream, []).extend(s for s in doomed if s[0] < result)
        if self.faulty:
            await self._after("trim", write=True)
        return result

    async def delete_stream(self, stream: str) -> None:
        if self.faulty:
            await self._gate("delete_stream", write=True)
        await self._backing.delete_stream(stream)
        if self.faulty:
            await self._after("delete_stream", write=True)

    # Indexed streams: forwarded to the shared store through the same gates.

    async def index_of(self, stream: str) -> IndexSpec | None:
        if self.faulty:
            await self._gate("index_of")
            result = await self._backing.index_of(stream)
            await self._after("index_of")
            return result
        return await self._backing.index_of(stream)

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        if self.faulty:
            await self._gate("indexes")
        return await self._backing.indexes(prefix=prefix)

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        if self.faulty:
            await self._gate("write_index", write=True)
        result = await self._backing.write_index(stream, spec)
        if self.faulty:
            await self._after("write_index", write=True)
        return result

    async def query_rows(
        self,
        stream: str,
        where: str,
        params: tuple[Any, ...],
        *,
        stop: int,
        order_by: str,
        limit: int | None,
    ) -> list[QueryRow]:
        if self.faulty:
            await self._gate("query")
            result = await self._backing.query_rows(
                stream, where, params, stop=stop, order_by=order_by, limit=limit
            )
            await self._after("query")
            return result
        return await self._backing.query_rows(
            stream, where, params, stop=stop, order_by=order_by, limit=limit
        )

    async def close(self) -> None:
        return None  # the shared store outlives every worker
