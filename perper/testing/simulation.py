"""Property testing of stream functions and deployments.

* :func:`items`, :func:`input_logs` — Hypothesis strategies for msgpack items and for the
  input streams of a function.
* :func:`run_function` — run one function over given inputs, deterministically and in
  memory, and return what it yields.
* :class:`DeploymentMachine` — a Hypothesis ``RuleBasedStateMachine`` over a simulated
  deployment: it appends to an ingest stream, crashes and restarts workers and lets
  time pass, and checks that the outputs always agree with a fault-free run.
* pytest fixtures :func:`perper_store` (one test per store kind) and :func:`sim`
  (simulate an app over seeds), and :func:`seed_shards` to spread seeds over
  pytest-xdist workers.

The simulator (``simulator/``) is imported lazily, inside functions: ``import perper``
never imports it.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from perper.app import App, StreamFunction
from perper.errors import ConfigError
from perper.runtime.engine import Runtime
from perper.store.base import LogStore
from perper.store.memory import MemoryStore
from perper.streamref import StreamRef
from perper.testing.recovery import input_map, stage_execution

if TYPE_CHECKING:
    from simulator.campaign import CampaignResult, Simulation
    from simulator.deployment import SimulatedDeployment

__all__ = [
    "STORE_KINDS",
    "DeploymentMachine",
    "SimHelper",
    "input_logs",
    "items",
    "perper_store",
    "run_function",
    "seed_shards",
    "sim",
]

_RUN = "fn"

# ------------------------------------------------------------------ strategies


def items(*, max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any msgpack item perper stores: None, bools, 64-bit ints, floats, strings, bytes,
    and lists and string-keyed dicts of them (nested)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.binary(max_size=20),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(st.text(max_size=8), children, max_size=5),
        ),
        max_leaves=max_leaves,
    )


def input_logs(
    names: Sequence[str] = ("source",),
    *,
    elements: st.SearchStrategy[Any] | None = None,
    min_size: int = 0,
    max_size: int = 30,
) -> st.SearchStrategy[dict[str, list[Any]]]:
    """The items of each named input stream, as ``{name: [item, ...]}``, ready for
    :func:`run_function`."""
    element = elements if elements is not None else items()
    return st.fixed_dictionaries(
        {name: st.lists(element, min_size=min_size, max_size=max_size) for name in names}
    )


# ----------------------------------------------------------------- run_function


def run_function(
    fn: StreamFunction, inputs: Mapping[str, Sequence[Any]] | Sequence[Any], **params: Any
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
        **params: its other parameters.

    Raises:
        ExecutionFailedError: the function raised (the traceback is in the message).
        ConfigError: bad arguments.
    """
    from simulator.loop import run_simulated

    mapped = input_map(fn, inputs, params, caller="run_function")
    return run_simulated(_run_function(fn, mapped, params), seed=0)


async def _run_function(
    fn: StreamFunction, inputs: dict[str, list[Any]], params: Mapping[str, Any]
) -> list[Any]:
    import asyncio

    store = MemoryStore()
    loop = asyncio.get_running_loop()
    runtime = Runtime(
        store,
        fn.app,
        clock=lambda: 1_700_000_000.0 + loop.time(),
        entropy=random.Random(0),
        worker_id="run_function",
    )
    execution = await stage_execution(runtime, fn, inputs, params, _RUN)
    await runtime.execute(execution)
    return [item async for _, item in store.read(execution)]


# -------------------------------------------------------------- state machine


class DeploymentMachine(RuleBasedStateMachine):
    """A simulated deployment under random operations, checked against fault-free runs.

    Subclass it and set the class attributes; Hypothesis then drives random sequences
    of appends to the ingest stream, crashes, restarts and waits, and checks:

    * at every step, each output stream is a prefix of what a fault-free run over the
      inputs so far (sealed) produces;
    * at the end, once the ingest stream is sealed and every worker restarted, each
      output stream equals it exactly.

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
    """

    app: ClassVar[App | None] = None
    ingest_param: ClassVar[str] = "source"
    params: ClassVar[dict[str, Any]] = {}
    elements: ClassVar[st.SearchStrategy[Any]] = st.integers(min_value=-1000, max_value=1000)
    workers: ClassVar[int] = 2
    ingest_stream: ClassVar[str] = "ingest/source"

    def __init__(self) -> None:
        super().__init__()
        from simulator.deployment import SimulatedDeployment

        if self.app is None:
            raise ConfigError(
                f"{type(self).__name__}: set the class attribute app = <your perper.App>"
            )
        self.inputs: list[Any] = []
        self.deployment: SimulatedDeployment = SimulatedDeployment(
            self.app, self._launch_params(), workers=self.workers
        )

    def _launch_params(self) -> dict[str, Any]:
        return {**self.params, self.ingest_param: StreamRef(self.ingest_stream)}

    def _reference(self) -> dict[str, list[Any]]:
        from simulator.deployment import SimulatedDeployment

        assert self.app is not None
        with SimulatedDeployment(self.app, self._launch_params(), workers=1) as clean:
            clean.append(self.ingest_stream, list(self.inputs))
            clean.seal(self.ingest_stream)
            clean.finish()
            return clean.outputs()

    @rule(data=st.data())
    def append(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(self.elements, min_size=1, max_size=5), label="batch")
        self.deployment.append(self.ingest_stream, batch)
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
    def outputs_are_prefixes_of_the_fault_free_run(self) -> None:
        expected = self._reference()
        for stream, actual in self.deployment.outputs().items():
            assert stream in expected, f"unexpected stream {stream!r}"
            assert actual == expected[stream][: len(actual)], (
                f"{stream}: {actual!r} is not a prefix of the fault-free {expected[stream]!r}"
            )

    def teardown(self) -> None:
        try:
            self.deployment.seal(self.ingest_stream)
            self.deployment.finish()
            expected = self._reference()
            assert self.deployment.outputs() == expected
        finally:
            self.deployment.close()


# ------------------------------------------------------------------- fixtures


def seed_shards(seeds: Sequence[int] | range, shards: int) -> list[range | list[int]]:
    """Split ``seeds`` into ``shards`` parts for ``pytest.mark.parametrize``, so
    pytest-xdist spreads them over its workers::

        @pytest.mark.parametrize("seeds", seed_shards(range(10_000), 8))
        def test_basic_survives_faults(sim, seeds): sim.run("examples/basic.py", seeds=seeds)
    """
    if shards < 1:
        raise ConfigError(f"seed_shards(shards={shards}): need at least one shard")
    if isinstance(seeds, range) and seeds.step == 1:
        size = math.ceil(len(seeds) / shards)
        return [
            range(seeds.start + i * size, min(seeds.start + (i + 1) * size, seeds.stop))
            for i in range(shards)
            if seeds.start + i * size < seeds.stop
        ]
    listed = list(seeds)
    return [listed[i::shards] for i in range(shards) if listed[i::shards]]


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
        from perper.app import load_app
        from simulator.campaign import Simulation
        from simulator.faults import DEFAULT_FAULTS

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

    def deployment(
        self, app: App, params: Mapping[str, Any] | None = None, **options: Any
    ) -> SimulatedDeployment:
        """A :class:`simulator.deployment.SimulatedDeployment` driven step by step."""
        from simulator.deployment import SimulatedDeployment

        return SimulatedDeployment(app, params, **options)


@pytest.fixture
def sim() -> SimHelper:
    """Simulate apps under faults: ``sim.run(app, seeds=range(200))``."""
    return SimHelper()


#: The store kinds :func:`perper_store` runs a test against; ``ignite`` joins when
#: ``$PERPER_TEST_IGNITE`` names a node.
STORE_KINDS = ("memory", "sqlite") + (("ignite",) if os.environ.get("PERPER_TEST_IGNITE") else ())


@pytest.fixture(params=STORE_KINDS)
async def perper_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogStore]:
    """A fresh, empty store of each kind (one test per kind)."""
    from perper.store import open_store

    kind = request.param
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        request.applymarker(pytest.mark.ignite)
        # A namespace of its own: the node outlives the test session, tmp_path names repeat.
        url = f"{os.environ['PERPER_TEST_IGNITE']}?namespace=test-{uuid.uuid4().hex}"
    store = open_store(url)
    try:
        yield store
    finally:
        await store.close()
