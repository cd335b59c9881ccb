"""The worker registry: which workers of an app share a store, so new runs spread over them.

Each :class:`~perper.runtime.engine.Runtime` working on every run of its app (``perper
worker``, ``Runtime.work()`` without ``run``; one bound to a single run is no peer)
keeps a *presence lease* in the store's ``leases`` table under
``~workers/{app}/{worker}`` (``~`` cannot start a run name, so no execution id looks
like it), shaped like a lease: ``{"owner": worker, "epoch": 1, "beat": int, "ran":
int}``. ``beat`` grows every ``ttl / 4`` seconds while it works,
``ran`` counts the executions it ran to their end, and ``owner`` becomes None when it
stops gracefully. No new table, so every store and log format stays as it was.

Liveness is observed, never computed from clocks (as for leases): a peer counts as live
until this worker has seen the same entry for ``ttl`` seconds of its own loop time, or
sees it released. The live workers, sorted by id, give each worker a rank; a run whose
index among the app's running runs is ``rank`` modulo their number is this worker's to
start, and the others leave it alone for a lease ttl (see
:meth:`perper.runtime.leases.Leases.claim`), so idle workers take new runs in turn
instead of the first one to poll taking them all. Entries stay after a worker ends
(``bench/scale.py`` reads what each ``perper worker`` ran from them).
"""

from __future__ import annotations

import asyncio
from typing import Any

from perper.store.base import LogStore

#: The metadata table of the registry, and the prefix of its keys there.
WORKERS_TABLE = "leases"
WORKERS_PREFIX = "~workers/"


def registry_key(app: str, worker: str) -> str:
    """The key of ``worker``'s presence lease for ``app``."""
    return f"{WORKERS_PREFIX}{app}/{worker}"


class WorkerRegistry:
    """This worker's entry in the registry and its view of the live peers.

    Args:
        store: where the registry lives.
        app: the app's name (workers of other apps are not peers).
        worker: this worker's id.
        ttl: seconds of loop time after which an unchanged entry counts as dead.
    """

    def __init__(self, store: LogStore, app: str, worker: str, ttl: float) -> None:
        self.store = store
        self.app = app
        self.worker = worker
        self.ttl = ttl
        #: Executions this worker ran to their end (``ran`` in its entry).
        self.ran = 0
        #: The live workers of the app, sorted, this one included.
        self.live: list[str] = [worker]
        self._seen: dict[str, tuple[Any, float]] = {}
        self._prefix = registry_key(app, "")

    async def beat(self, *, stopped: bool = False) -> None:
        """Write this worker's entry (a new beat) and refresh the view of its peers."""

        def write(value: Any) -> Any:
            beat = value.get("beat", 0) + 1 if isinstance(value, dict) else 1
            owner = None if stopped else self.worker
            return {"owner": owner, "epoch": 1, "beat": beat, "ran": self.ran}

        await self.store.meta_update(WORKERS_TABLE, self._prefix + self.worker, write)
        if stopped:
            return
        now = asyncio.get_running_loop().time()
        live = [self.worker]
        for key, meta in await self.store.meta_scan(WORKERS_TABLE, prefix=self._prefix):
            key = key[len(self._prefix) :]
            value = meta.value
            if key == self.worker or not isinstance(value, dict):
                continue
            if value.get("owner") is None:  # stopped
                self._seen.pop(key, None)
                continue
            seen = self._seen.get(key)
            if seen is None or seen[0] != value:
                self._seen[key] = (value, now)
            elif now - seen[1] >= self.ttl:
                continue
            live.append(key)
        self.live = sorted(live)

    def mine(self, index: int) -> bool:
        """Whether the run at ``index`` among the app's running runs (sorted by name) is
        this worker's to start."""
        count = len(self.live)
        return count == 1 or index % count == self.live.index(self.worker)
