"""Many seeds of one app: the :class:`Simulation` (app + parameters + options, with its
fault-free reference computed once), seed ranges over processes, the crash sweep, and
saving a failing run's store as a SQLite log.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from perper import codec
from perper.app import App
from perper.errors import ConfigError
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore
from simulator.checkers import Reference
from simulator.faults import (
    DEFAULT_FAULTS,
    Crash,
    Fault,
    Scenario,
    derive_scenario,
    format_schedule,
)
from simulator.loop import run_simulated
from simulator.recorded import RecordedRun
from simulator.world import (
    DEFAULT_STEP_BUDGET,
    RUN,
    PreparedStore,
    SimulationFailed,
    SimulationResult,
    reference_run,
    simulate,
)


@dataclass(frozen=True)
class SeedOutcome:
    """A light summary of one seed (what crosses process boundaries)."""

    seed: int
    ok: bool
    kind: str | None
    steps: int
    virtual_time: float
    wall_time: float
    trace_hash: str = ""
    report: str = ""


@dataclass(frozen=True)
class CampaignResult:
    """The outcome of many seeds.

    Attributes:
        outcomes: one per seed, in seed order.
        wall_time: real seconds for the whole campaign.
        first_failure: the lowest failing seed's full result (re-run in this process).
    """

    outcomes: tuple[SeedOutcome, ...]
    wall_time: float
    first_failure: SimulationResult | None = field(default=None, repr=False)

    @property
    def failures(self) -> tuple[SeedOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.ok)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def steps(self) -> int:
        return sum(o.steps for o in self.outcomes)

    @property
    def virtual_time(self) -> float:
        return sum(o.virtual_time for o in self.outcomes)

    def summary(self) -> str:
        wall = max(self.wall_time, 1e-9)
        return (
            f"{len(self.outcomes)} seeds run, {len(self.failures)} failures; "
            f"{self.steps:,} steps in {self.wall_time:.2f}s ({self.steps / wall:,.0f} steps/s, "
            f"{len(self.outcomes) / wall:,.1f} seeds/s); simulated {self.virtual_time:,.1f}s "
            f"in {self.wall_time:.2f}s wall ({self.virtual_time / wall:,.1f}x real time)"
        )

    def raise_on_failure(self) -> None:
        """Raise :class:`SimulationFailed` for the first failing seed, if any."""
        if self.first_failure is not None:
            self.first_failure.raise_on_failure()
        if self.failures:
            first = self.failures[0]
            raise SimulationFailed(first.report or f"seed {first.seed} failed: {first.kind}", None)


class Simulation:
    """One app under simulation: its parameters, the fault kinds seeds may enable, and
    the fault-free reference run (computed on first use).

    Args:
        app: the application.
        params: launcher parameters.
        kinds: fault kinds a seed may enable (swarm: each seed picks a subset).
        workers: fix the number of workers (None: drawn per seed, 1-4).
        planted_bugs: runtime bugs to switch on (the simulator's self-tests only).
        swarm: enable a random subset of ``kinds`` per seed (False: all of them).
        step_budget: steps one seed may take.
        recorded: a recorded run as the workload (:func:`simulator.recorded.load_recorded`):
            its launcher parameters and recorded effects; the reference is then its
            recorded outputs, not a fresh run (``params`` must be None).
        other_hash_seed: when a function iterates a set, compute the reference in a child
            process under another ``PYTHONHASHSEED`` (:mod:`simulator.hashseed`), so an
            output that follows hash order shows as a difference.
    """

    def __init__(
        self,
        app: App,
        params: Mapping[str, Any] | None = None,
        *,
        kinds: Sequence[str] = DEFAULT_FAULTS,
        workers: int | None = None,
        planted_bugs: Iterable[str] = (),
        swarm: bool = True,
        step_budget: int = DEFAULT_STEP_BUDGET,
        recorded: RecordedRun | None = None,
        other_hash_seed: bool = True,
    ) -> None:
        if recorded is not None and params:
            raise ConfigError(
                "a recorded run brings its own launcher parameters: drop --param with --log"
            )
        self.app = app
        self.recorded = recorded
        self.other_hash_seed = other_hash_seed
        self.params = dict(recorded.params if recorded is not None else params or {})
        self.preload = recorded.preload if recorded is not None else {}
        self.feeds = recorded.feeds if recorded is not None else {}
        self.calls = recorded.calls if recorded is not None else ()
        self.run_name = recorded.run if recorded is not None else RUN
        self.kinds = tuple(kinds)
        self.workers = workers
        self.planted_bugs = frozenset(planted_bugs)
        self.swarm = swarm
        self.step_budget = step_budget
        self._reference: Reference | None = None
        self._prepared: PreparedStore | None = None

    @property
    def reference(self) -> Reference:
        if self._reference is None:
            from simulator.hashseed import depends_on_hash_order, reference_in_child

            fresh = None
            if self.other_hash_seed and self.recorded is None and depends_on_hash_order(self.app):
                fresh = reference_in_child(
                    self.app, self.params, step_budget=self.step_budget, preload=self.preload
                )
            if fresh is None:
                fresh = reference_run(
                    self.app,
                    self.params,
                    step_budget=self.step_budget,
                    preload=self.preload,
                    feeds=self.feeds,
                    calls=self.calls,
                    run=self.run_name,
                )
            if self.recorded is not None:
                # Compare with what production wrote; the fault-free run only sizes the
                # fault schedules (steps, virtual time).
                recorded = replace(self.recorded.reference)
                recorded.steps, recorded.virtual_time = fresh.steps, fresh.virtual_time
                fresh = recorded
            self._reference = fresh
        return self._reference

    def scenario(self, seed: int, schedule: Sequence[Fault] | None = None) -> Scenario:
        """The scenario ``seed`` derives (with ``schedule`` instead of the drawn one)."""
        scenario = derive_scenario(
            seed,
            kinds=self.kinds,
            workers=self.workers,
            reference_steps=self.reference.steps,
            reference_items=max(self.reference.heads.values(), default=0),
            swarm=self.swarm,
        )
        if schedule is not None:
            scenario = scenario.with_schedule(schedule)
        return scenario

    @property
    def prepared(self) -> PreparedStore:
        """The store as every seed starts from it (computed once)."""
        if self._prepared is None:
            self._prepared = PreparedStore.build(self.app, self.params, self.preload, self.run_name)
        return self._prepared

    def run_scenario(self, scenario: Scenario, *, trace: bool = False) -> SimulationResult:
        return simulate(
            self.app,
            self.params,
            scenario,
            reference=self.reference,
            planted_bugs=self.planted_bugs,
            trace=trace,
            step_budget=self.step_budget,
            preload=self.preload,
            feeds=self.feeds,
            calls=self.calls,
            run=self.run_name,
            prepared=self.prepared,
        )

    def run_seed(
        self, seed: int, *, trace: bool = False, schedule: Sequence[Fault] | None = None
    ) -> SimulationResult:
        """Simulate one seed (optionally with an explicit fault schedule)."""
        return self.run_scenario(self.scenario(seed, schedule), trace=trace)

    def run_seeds(
        self,
        seeds: Iterable[int],
        *,
        jobs: int = 1,
        trace: bool = False,
        stop_on_failure: bool = False,
    ) -> CampaignResult:
        """Simulate every seed; with ``jobs`` > 1, spread them over processes. The lowest
        failing seed is re-run here (runs are deterministic) for its full result."""
        seeds = list(seeds)
        started = time.perf_counter()
        self.reference  # noqa: B018 - computed once, before forking
        self.prepared  # noqa: B018 - likewise
        if jobs > 1 and len(seeds) > 1:
            outcomes = self._run_parallel(seeds, jobs, trace)
        else:
            outcomes = []
            for seed in seeds:
                outcome = _outcome(self.run_seed(seed, trace=trace))
                outcomes.append(outcome)
                if stop_on_failure and not outcome.ok:
                    break
        wall = time.perf_counter() - started
        first = None
        failures = [o for o in outcomes if not o.ok]
        if failures:
            first = self.run_seed(failures[0].seed, trace=trace)
        return CampaignResult(tuple(outcomes), wall, first)

    def _run_parallel(self, seeds: list[int], jobs: int, trace: bool) -> list[SeedOutcome]:
        """Fork ``jobs`` children (each inherits the app and the reference run), give each
        every ``jobs``-th seed, and read their outcomes back from pipes as msgpack: no
        pickle crosses the process boundary. POSIX only (``os.fork``)."""
        if not hasattr(os, "fork"):
            raise RuntimeError("--jobs needs os.fork (Linux or macOS); run with --jobs 1")
        children: list[tuple[int, int]] = []
        for chunk in (seeds[i::jobs] for i in range(jobs)):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: simulate its seeds, report, exit without cleanup
                os.close(read_end)
                _run_child(self, chunk, trace, write_end)
            os.close(write_end)
            children.append((pid, read_end))
        by_seed: dict[int, SeedOutcome] = {}
        errors = []
        for pid, read_end in children:
            with os.fdopen(read_end, "rb") as pipe:
                data = pipe.read()
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0 or not data:
                errors.append(
                    f"simulator job {pid} exited with status {os.waitstatus_to_exitcode(status)}"
                )
                continue
            for fields in codec.unpack(data):
                outcome = SeedOutcome(**fields)
                by_seed[outcome.seed] = outcome
        if errors:
            raise RuntimeError("; ".join(errors) + " (see its output above)")
        return [by_seed[s] for s in seeds]

    def sweep(self, *, seed: int = 0, workers: int = 1, limit: int | None = None) -> CampaignResult:
        """Crash the deployment at every one of its scheduling steps, one run per step.

        Every store call is its own step here (the world yields before each), so a crash
        lands between any two writes — between a checkpoint and the flush it covers, say.
        The worker restarts at once; its leases expire by observation.
        """
        # Buffers flush on blocking and at checkpoints only (big batches, no timer), so a
        # crash can land between a checkpoint and the flush of the items it covers.
        base = replace(
            self.scenario(seed),
            workers=workers,
            kinds=("crash",),
            schedule=(),
            yield_every_call=True,
            settings=replace(self.scenario(seed).settings, flush_delay=60.0, batch_size=1000),
        )
        started = time.perf_counter()
        clean = self.run_scenario(base)
        outcomes = [_outcome(clean)]
        total = clean.worker_steps[0] if clean.worker_steps else 0
        if limit is not None:
            total = min(total, limit)
        first: SimulationResult | None = None if clean.ok else clean
        for step in range(1, total + 1):
            result = self.run_scenario(base.with_schedule((Crash("crash", 0, step, 0.0),)))
            outcome = _outcome(result)
            outcomes.append(replace(outcome, seed=step))
            if first is None and not result.ok:
                first = result
        return CampaignResult(tuple(outcomes), time.perf_counter() - started, first)


def _run_child(simulation: Simulation, seeds: list[int], trace: bool, pipe: int) -> None:
    """In a forked child: simulate ``seeds``, write the outcomes to ``pipe``, and exit."""
    code = 1
    try:
        logging.disable(logging.CRITICAL)
        outcomes = [_outcome(simulation.run_seed(seed, trace=trace)) for seed in seeds]
        data = codec.pack([dataclasses.asdict(outcome) for outcome in outcomes])
        with os.fdopen(pipe, "wb") as out:
            out.write(data)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _outcome(result: SimulationResult) -> SeedOutcome:
    return SeedOutcome(
        seed=result.seed,
        ok=result.ok,
        kind=str(result.violation.kind) if result.violation else None,
        steps=result.steps,
        virtual_time=result.virtual_time,
        wall_time=result.wall_time,
        trace_hash=result.trace_hash,
        report="" if result.ok else result.describe(),
    )


def parse_seeds(text: str) -> range:
    """``"0..199"`` -> range(0, 200) (both ends included); ``"7"`` -> range(7, 8)."""
    from perper.errors import ConfigError

    try:
        if ".." in text:
            low, high = text.split("..", 1)
            first, last = int(low), int(high)
        else:
            first = last = int(text)
    except ValueError:
        raise ConfigError(
            f"--seeds {text!r}: write A..B, e.g. 0..199 (both ends included)"
        ) from None
    if last < first:
        raise ConfigError(f"--seeds {text!r}: the range is empty ({last} < {first})")
    return range(first, last + 1)


async def _copy_to_sqlite(source: MemoryStore, path: Path) -> None:
    from perper.store.mirror import copy_store

    target = SQLiteStore(path)
    try:
        # Streams a trim deleted items of (ephemeral) cannot be copied whole: left out.
        await copy_store(source, target, skip_trimmed=True)
    finally:
        await target.close()


def save_sqlite(store: MemoryStore, path: str | os.PathLike[str]) -> Path:
    """Copy a simulated store into a new SQLite log that ``perper streams`` and ``perper
    replay`` open. An existing file at ``path`` is replaced."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)
    run_simulated(_copy_to_sqlite(store, target))
    return target


def reproduce_command(
    app_path: str,
    seed: int,
    *,
    kinds: Sequence[str],
    workers: int | None,
    params: Sequence[str],
    schedule: Sequence[Fault] | None = None,
    log: str | None = None,
    run: str | None = None,
) -> str:
    """The one-line command that re-runs exactly this seed, every argument shell-quoted
    (``shlex.quote``): a JSON ``--param`` with spaces, quotes or ``$`` pastes back intact."""
    parts = ["python -m simulator run", shlex.quote(app_path), f"--seed {seed}"]
    if tuple(kinds) != DEFAULT_FAULTS:
        parts.append("--faults " + shlex.quote(",".join(kinds) or "none"))
    if workers is not None:
        parts.append(f"--workers {workers}")
    parts.extend("--param " + shlex.quote(p) for p in params)
    if log is not None:
        parts.append("--log " + shlex.quote(log))
        if run is not None:
            parts.append("--run " + shlex.quote(run))
    if schedule is not None:
        parts.append("--schedule " + shlex.quote(format_schedule(schedule)))
    return " ".join(parts)
