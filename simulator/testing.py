"""Simulator-backed test helpers: property testing of stream functions and deployments.

* :func:`run_function` — run one function over given inputs, deterministically and in
  memory (in the simulator's event loop), and return what it yields.
* :class:`DeploymentMachine` — a Hypothesis ``RuleBasedStateMachine`` over a simulated
  deployment: it appends to an ingest stream, crashes and restarts workers and lets
  time pass, and checks that the outputs always agree with a fault-free run.
* :class:`SimHelper`, what the ``sim`` fixture gives a test (simulate an app over seeds);
  the fixture itself is registered by the pytest plugin :mod:`simulator.plugin`.

What needs only perper stays in :mod:`perper.testing`: the Hypothesis strategies
(``items``, ``input_logs``), ``seed_shards`` and the ``perper_store`` fixture. This module
imports perper; perper never imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from perper import codec
from perper.app import App, StreamFunction, load_app
from perper.errors import ConfigError
from perper.runtime.engine import Runtime
from perper.runtime.settings import RuntimeHooks
from perper.store.memory import MemoryStore
from perper.streamref import StreamRef
from perper.testing.clock import EPOCH, ItemClock, TimeSchedule
from perper.testing.recovery import input_map, stage_execution
from simulator.campaign import CampaignResult, Simulation
from simulator.checkers import Reference
from simulator.deployment import DEPLOYMENT_SETTINGS, SimulatedDeployment, drive
from simulator.faults import DEFAULT_FAULTS
from simulator.loop import run_simulated
from simulator.world import RUN

__all__ = ["DeploymentMachine", "SimHelper", "run_function"]

_RUN = "fn"

# ----------------------------------------------------------------- run_function


def run_function(
    fn: StreamFunction,
    inputs: Mapping[str, Sequence[Any]] | Sequence[Any],
    *,
    time_schedule: TimeSchedule | None = None,
    **params: Any,
) -> list[Any]:
    """Run ``fn`` over ``inputs`` in memory and return the items it yields.

    Deterministic: it runs in the simulator's event loop (virtual time, a fixed
    scheduling seed), with ``ctx.now()`` reading a virtual clock and ``ctx.random()``
    a seeded generator. Each input stream is stored and sealed first, so the function
    sees the whole of it and then its end. Safe to call from async tests too.

    Args:
        fn: a function registered with ``@app.stream`` or ``@app.action``.
        inputs: the items of each input stream by parameter name; a plain sequence when
            the function has exactly one parameter not in ``params``.
        time_schedule: what ``ctx.now()`` reads per input item: seconds per item, or one
            clock value per item in the order the function reads them (see
            :class:`perper.testing.clock.ItemClock`). Default: the virtual clock.
        **params: its other parameters.

    Raises:
        ExecutionFailedError: the function raised (the traceback is in the message).
        ConfigError: bad arguments.
    """
    mapped = input_map(fn, inputs, params, caller="run_function")
    clock = ItemClock(time_schedule) if time_schedule is not None else None
    return run_simulated(_run_function(fn, mapped, params, clock), seed=0)


async def _run_function(
    fn: StreamFunction,
    inputs: dict[str, list[Any]],
    params: Mapping[str, Any],
    clock: ItemClock | None = None,
) -> list[Any]:
    store = MemoryStore()
    loop = asyncio.get_running_loop()
    runtime = Runtime(
        store,
        fn.app,
        hooks=RuntimeHooks(on_boundary=clock.on_boundary if clock is not None else None),
        clock=clock if clock is not None else (lambda: EPOCH + loop.time()),
        entropy=random.Random(0),
        worker_id="run_function",
    )
    execution = await stage_execution(runtime, fn, inputs, params, _RUN)
    await runtime.execute(execution)
    return [item async for _, item in store.read(execution)]


# -------------------------------------------------------------- state machine


class DeploymentMachine(RuleBasedStateMachine):
    """A simulated deployment under random operations, checked against a fault-free one.

    Subclass it and set the class attributes; Hypothesis then drives random sequences
    of appends to the ingest stream, crashes, restarts and waits. Beside the faulty
    deployment runs a fault-free one (one worker) that gets the same appends: the
    reference is computed incrementally, as the inputs arrive, never re-run from the
    start. The checks compare the way ``python -m simulator`` does:

    * at every step, each output stream agrees (msgpack-canonical equality) with the
      reference's over the items both have written; an output the reference has not
      reached yet lets the reference run on (bounded) before it counts as extra;
    * at the end, once the ingest stream is sealed and every worker restarted, each
      output stream equals the reference's exactly;
    * streams whose values depend on recorded effects (``ctx.now()``, ``ctx.random()``,
      ``ctx.uuid()``, directly or through an input) legitimately differ between two
      deployments: they are not compared item by item; instead the faulty deployment's
      final log must replay (its recorded inputs and effects reproduce its outputs).

    Override :meth:`compare` to compare otherwise (e.g. ignore a field).

    Example::

        class TotalsMachine(DeploymentMachine):
            app = my_app
            ingest_param = "source"          # the launcher's StreamRef parameter
            elements = st.integers(0, 100)

        TestTotals = TotalsMachine.TestCase

    Attributes:
        app: the application (required).
        ingest_param: the launcher parameter that receives the ingest stream's StreamRef.
        params: the launcher's other parameters.
        elements: strategy for appended items.
        workers: how many workers the deployment has.
        catch_up: virtual seconds the reference may run on to catch up, per check.
    """

    app: ClassVar[App | None] = None
    ingest_param: ClassVar[str] = "source"
    params: ClassVar[dict[str, Any]] = {}
    elements: ClassVar[st.SearchStrategy[Any]] = st.integers(min_value=-1000, max_value=1000)
    workers: ClassVar[int] = 2
    ingest_stream: ClassVar[str] = "ingest/source"
    catch_up: ClassVar[float] = 30.0

    def __init__(self) -> None:
        super().__init__()
        if self.app is None:
            raise ConfigError(
                f"{type(self).__name__}: set the class attribute app = <your perper.App>"
            )
        self.inputs: list[Any] = []
        self._effect_dependent: set[str] = set()
        self.deployment: SimulatedDeployment = SimulatedDeployment(
            self.app, self._launch_params(), workers=self.workers
        )
        self.reference: SimulatedDeployment = SimulatedDeployment(
            self.app,
            self._launch_params(),
            workers=1,
            settings=dataclasses.replace(DEPLOYMENT_SETTINGS, lease_ttl=2.0),
        )

    def _launch_params(self) -> dict[str, Any]:
        return {**self.params, self.ingest_param: StreamRef(self.ingest_stream)}

    def effect_dependent_streams(self) -> set[str]:
        """The reference's streams whose values depend on recorded effects (so far)."""
        return drive(Reference.from_store(self.reference.world.store, RUN)).tainted

    def compare(
        self, stream: str, expected: list[Any] | None, actual: list[Any], *, final: bool
    ) -> str | None:
        """Compare one output stream with the reference's; return what is wrong, or None.

        Args:
            stream: the output stream.
            expected: the reference's items so far (None: the reference has no such
                stream yet); at the end (``final``) all of them.
            actual: the faulty deployment's items.
            final: True at the end, when both deployments have finished: the streams
                must then be equal, not only agree as far as both go.

        The default skips effect-dependent streams (checked by replay instead) and
        compares the others item by item with msgpack-canonical equality.
        """
        if stream in self._effect_dependent:
            return None
        if expected is None:
            return f"unexpected stream {stream!r}: the fault-free deployment has none"
        for seq, (want, got) in enumerate(zip(expected, actual, strict=False)):
            if codec.canonical(want) != codec.canonical(got):
                return (
                    f"{stream}: seq {seq} holds {got!r}, the fault-free deployment {want!r}"
                    f"\n  actual:   {actual!r}\n  expected: {expected!r}"
                )
        if len(actual) > len(expected) or (final and len(actual) != len(expected)):
            return (
                f"{stream}: {len(actual)} items, the fault-free deployment {len(expected)}"
                f"\n  actual:   {actual!r}\n  expected: {expected!r}"
            )
        return None

    def _disagreement(self, *, final: bool) -> str | None:
        self._effect_dependent = self.effect_dependent_streams()
        actual = self.deployment.outputs()
        expected = self.reference.outputs()
        streams = sorted(set(actual) | set(expected)) if final else sorted(actual)
        for stream in streams:
            found = self.compare(stream, expected.get(stream), actual.get(stream, []), final=final)
            if found is not None:
                return found
        return None

    def _ahead(self) -> bool:
        """Whether the deployment wrote a stream or items the reference has not yet."""
        expected = self.reference.outputs()
        return any(
            len(items) > len(expected.get(stream, ()))
            for stream, items in self.deployment.outputs().items()
        )

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(self.elements, min_size=1, max_size=5), label="batch")
        self.deployment.append(self.ingest_stream, batch)
        self.reference.append(self.ingest_stream, batch)
        self.inputs.extend(batch)

    @rule(worker=st.integers(min_value=0, max_value=7))
    def crash(self, worker: int) -> None:
        self.deployment.crash(worker % self.workers)

    @rule(worker=st.integers(min_value=0, max_value=7))
    def restart(self, worker: int) -> None:
        self.deployment.restart(worker % self.workers)

    @rule(seconds=st.sampled_from((0.0, 0.01, 0.1, 0.5, 2.0)))
    def advance(self, seconds: float) -> None:
        self.deployment.advance(seconds)

    @precondition(lambda self: self.inputs)
    @invariant()
    def outputs_agree_with_the_fault_free_deployment(self) -> None:
        found = self._disagreement(final=False)
        waited = 0.0
        # The reference only runs when asked to: let it run on while the deployment is
        # ahead of it (an agreement over a common prefix is not a failure).
        while found is not None and waited < self.catch_up and self._ahead():
            self.reference.advance(0.5)
            waited += 0.5
            found = self._disagreement(final=False)
        assert found is None, found

    def teardown(self) -> None:
        try:
            self.deployment.seal(self.ingest_stream)
            self.deployment.finish()
            self.reference.seal(self.ingest_stream)
            self.reference.finish()
            found = self._disagreement(final=True)
            assert found is None, found
            tainted = self.effect_dependent_streams()
            if tainted:
                world = self.deployment.world
                world.reference = Reference(tainted=tainted)
                world._check_replay()
                assert world.violation is None, world.violation.describe()
        finally:
            self.deployment.close()
            self.reference.close()


class SimHelper:
    """What the ``sim`` fixture gives a test: simulate apps over seeds."""

    def simulation(
        self,
        app: App | str | os.PathLike[str],
        params: Mapping[str, Any] | None = None,
        *,
        faults: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> Simulation:
        """A :class:`simulator.Simulation` of ``app`` (an App or the path of its file)."""
        application = app if isinstance(app, App) else load_app(Path(app))
        return Simulation(
            application,
            params,
            kinds=tuple(faults) if faults is not None else DEFAULT_FAULTS,
            workers=workers,
        )

    def run(
        self,
        app: App | str | os.PathLike[str],
        params: Mapping[str, Any] | None = None,
        *,
        seeds: Sequence[int] | range = range(100),
        faults: Sequence[str] | None = None,
        workers: int | None = None,
        raise_on_failure: bool = True,
    ) -> CampaignResult:
        """Simulate ``seeds`` of ``app`` and (by default) fail the test on a violation,
        with the seed, the fault schedule and the first violation in the message."""
        result = self.simulation(app, params, faults=faults, workers=workers).run_seeds(seeds)
        if raise_on_failure:
            result.raise_on_failure()
        return result

    def from_log(
        self,
        log: str | os.PathLike[str],
        app: App | str | os.PathLike[str],
        *,
        run: str | None = None,
        faults: Sequence[str] | None = None,
        workers: int | None = None,
    ) -> Simulation:
        """A :class:`simulator.Simulation` whose workload is a recorded run of ``app``
        in the SQLite log ``log`` (its parameters and recorded effects) and whose
        reference is the recorded outputs: ``sim.from_log(path, app).run_seeds(range(200))
        .raise_on_failure()`` fails unless today's code writes what production wrote.

        Raises:
            ConfigError: no such log or run, or a run of another app.
        """
        from simulator.recorded import load_recorded

        application = app if isinstance(app, App) else load_app(Path(app))
        return Simulation(
            application,
            kinds=tuple(faults) if faults is not None else DEFAULT_FAULTS,
            workers=workers,
            recorded=load_recorded(log, application, run=run),
        )

    def deployment(
        self, app: App, params: Mapping[str, Any] | None = None, **options: Any
    ) -> SimulatedDeployment:
        """A :class:`simulator.deployment.SimulatedDeployment` driven step by step."""
        return SimulatedDeployment(app, params, **options)
