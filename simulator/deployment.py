"""A simulated deployment driven step by step from the outside (tests, state machines).

Where :func:`simulator.world.simulate` runs a whole seed with its drawn fault schedule,
a :class:`SimulatedDeployment` starts the workers and then waits for orders: append to
ingest streams, crash or restart a worker, let virtual time pass, finish. The runtime's
fencing and failed executions are still checked as it runs.

    deployment = SimulatedDeployment(app, {"source": StreamRef("in/numbers")}, workers=2)
    deployment.append("in/numbers", [1, 2, 3])
    deployment.advance(0.5)
    deployment.crash(0)
    deployment.seal("in/numbers")
    deployment.finish()
    deployment.outputs()  # {"sim/total-0": [...], ...}
"""

from __future__ import annotations

import math
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from perper.app import App
from perper.runtime.ids import is_internal_stream
from perper.runtime.settings import RuntimeSettings
from perper.store.base import segment_items
from simulator.checkers import Violation
from simulator.faults import Crash, Scenario
from simulator.world import RUN, SimulationFailed, World

T = TypeVar("T")

#: What a stepped deployment's workers run with: short leases and small batches.
DEPLOYMENT_SETTINGS = RuntimeSettings(
    lease_ttl=1.0, batch_size=5, flush_delay=0.01, checkpoint_every=3, poll_interval=0.02
)


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (MemoryStore calls) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("drive() was given a coroutine that suspends")


class SimulatedDeployment:
    """Workers running ``app`` on a simulated store, controlled from outside.

    Args:
        app: the application.
        params: launcher parameters (an ingest stream is passed as a StreamRef to a
            stream no function writes, e.g. ``StreamRef("in/orders")``).
        workers: how many workers start.
        seed: seeds the scheduler and the workers' entropy.
        settings: the workers' runtime settings (default :data:`DEPLOYMENT_SETTINGS`:
            short leases and small batches, so that a few steps exercise recovery).
        planted_bugs: runtime bugs to switch on (the simulator's self-tests).
    """

    def __init__(
        self,
        app: App,
        params: Mapping[str, Any] | None = None,
        *,
        workers: int = 2,
        seed: int = 0,
        settings: RuntimeSettings = DEPLOYMENT_SETTINGS,
        planted_bugs: frozenset[str] = frozenset(),
    ) -> None:
        scenario = Scenario(
            seed=seed,
            workers=workers,
            kinds=("crash",),
            settings=settings,
            heal_at=math.inf,
        )
        self.world = World(app, params or {}, scenario, planted_bugs=planted_bugs)
        self.world.loop.run_until_complete(self.world.start())

    @property
    def time(self) -> float:
        """Virtual seconds since the deployment started."""
        return self.world.loop.virtual_time

    @property
    def violation(self) -> Violation | None:
        return self.world.violation

    def _check(self) -> None:
        if self.world.violation is not None:
            raise SimulationFailed(self.world.violation.describe(), self.world.violation)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass (the workers run meanwhile).

        Raises:
            SimulationFailed: a check failed meanwhile.
        """
        loop = self.world.loop
        loop.call_at_virtual(loop.virtual_time + seconds, loop.stop)
        loop.run_forever()
        self._check()

    def append(self, stream: str, items: list[Any]) -> None:
        """Append ``items`` to the end of an ingest stream."""
        store = self.world.store
        head = drive(store.head(stream))
        drive(store.append(stream, head, items))

    def seal(self, stream: str) -> None:
        """Finish an ingest stream (its readers end once they have read it all)."""
        drive(self.world.store.seal(stream))

    def crash(self, worker: int) -> None:
        """Kill worker ``worker`` now (kill -9); it stays down until :meth:`restart`."""
        slot = self.world.slots[worker]
        if slot.alive:
            self.world._crash(slot, Crash("crash", worker, 0, math.inf))

    def restart(self, worker: int) -> None:
        """Start a fresh worker in place of a crashed one (no-op if it is alive)."""
        slot = self.world.slots[worker]
        if not slot.alive:
            slot.restart_pending = True
            self.world._restart(slot)

    def finish(self, *, within: float = 60.0) -> None:
        """Restart every crashed worker and run until the run is done.

        Raises:
            SimulationFailed: a check failed, or the run did not finish ``within`` seconds.
        """
        for index in range(len(self.world.slots)):
            self.restart(index)
        loop = self.world.loop
        deadline = loop.call_at_virtual(loop.virtual_time + within, self.world._liveness_deadline)
        done = self.world._done
        assert done is not None
        if not done.done():
            done.add_done_callback(lambda _: loop.stop())
            loop.run_forever()
        deadline.cancel()
        self._check()

    def outputs(self) -> dict[str, list[Any]]:
        """Every output stream of the run and its items now (effects left out)."""
        store = self.world.store
        result: dict[str, list[Any]] = {}
        for name, stream in sorted(store._streams.items()):
            if name.startswith(RUN + "/") and not is_internal_stream(name):
                result[name] = [item for _, data in stream.data for item in segment_items(data)]
        return result

    def close(self) -> None:
        """Tear the deployment down (idempotent)."""
        if not self.world.loop.is_closed():
            self.world._tearing_down = True
            self.world.loop.close()

    def __enter__(self) -> SimulatedDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
