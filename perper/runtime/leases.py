"""Leases: which worker may run an execution, and fencing of the ones that lost it.

A lease lives in the store's ``leases`` table, keyed by execution id, as
``{"owner": worker or None, "epoch": int, "beat": int}``. Every change goes through
compare-and-set, so two workers never both believe they hold it.

* **Claiming** a free lease (no entry, or ``owner`` None after a release) or an expired
  one writes ``epoch + 1`` and the claimant as owner. The epoch is what the owner's
  writes carry: once it wrote to a stream or a checkpoint, the store refuses writes with
  a lower epoch, so a stale owner (a paused process, a partitioned worker) is fenced.
* **Renewing**: the owner bumps ``beat`` every ``ttl / 4`` seconds of loop time.
* **Expiry is observed, not computed from clocks**: a worker considers a lease expired
  once it has seen the same ``(owner, epoch, beat)`` for ``ttl`` seconds of *its own*
  loop time. No two clocks are ever compared, so clock skew between workers cannot
  make a live lease look expired.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from perper.store.base import KEEP, LogStore, Meta


@dataclass(frozen=True, slots=True)
class Lease:
    """A lease as stored."""

    owner: str | None
    epoch: int
    beat: int = 0

    def to_meta(self) -> dict[str, Any]:
        return {"owner": self.owner, "epoch": self.epoch, "beat": self.beat}

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> Lease:
        return cls(value["owner"], value["epoch"], value.get("beat", 0))


class Leases:
    """The lease operations of one worker.

    Args:
        store: where leases live.
        owner: this worker's id.
        ttl: seconds of loop time without a beat after which a lease counts as expired.
    """

    def __init__(self, store: LogStore, owner: str, ttl: float) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self._seen: dict[str, tuple[tuple[str, int, int], float]] = {}
        self._fresh: dict[str, float] = {}

    async def claim(self, execution: str, *, defer_fresh: bool = False) -> int | None:
        """Take the lease of ``execution`` if it is free or expired; return the new epoch,
        or None if another worker holds it.

        ``defer_fresh``: an execution nobody has claimed yet is another worker's to start
        (:mod:`perper.runtime.workers`): take it only once this worker has seen it
        unclaimed for ``ttl`` seconds of its own loop time (that worker may be gone).
        """
        entry = await self.store.meta_get("leases", execution)
        if self.declines(execution, entry, defer_fresh=defer_fresh):
            return None
        return await self.take(execution, entry)

    def declines(self, execution: str, entry: Meta | None, *, defer_fresh: bool = False) -> bool:
        """Whether :meth:`claim` would give up on the lease row ``entry`` just read (held
        by another worker and not seen unchanged for ``ttl``, or fresh and deferred),
        noting what it saw; if not, :meth:`take` tries to take it.

        The work loop reads the row and asks this, so that an idle poll's claim of a
        lease another worker holds is no coroutine call.
        """
        if entry is None:
            if defer_fresh:
                now = asyncio.get_running_loop().time()
                first = self._fresh.setdefault(execution, now)
                if now - first < self.ttl:
                    return True
            return False
        if self._fresh:
            self._fresh.pop(execution, None)
        value = entry.value
        owner = value["owner"]
        if owner is not None and owner != self.owner:
            # Held by another worker: what is compared is (owner, epoch, beat), as a
            # tuple (no Lease built per poll of an idle worker).
            now = asyncio.get_running_loop().time()
            held = (owner, value["epoch"], value.get("beat", 0))
            seen = self._seen.get(execution)
            if seen is None or seen[0] != held:
                self._seen[execution] = (held, now)
                return True
            if now - seen[1] < self.ttl:
                return True
        return False

    async def take(self, execution: str, entry: Meta | None) -> int | None:
        """Claim the lease whose row was read as ``entry`` (None: never claimed) by
        compare-and-set on that row; the new epoch, or None if the row changed since."""
        store = self.store
        if entry is None:
            self._fresh.pop(execution, None)
            lease = Lease(self.owner, 1)
            if await store.meta_cas("leases", execution, lease.to_meta(), version=0) is None:
                return None
            return 1
        current = Lease.from_meta(entry.value)
        claimed = Lease(self.owner, current.epoch + 1)
        if (
            await store.meta_cas("leases", execution, claimed.to_meta(), version=entry.version)
            is None
        ):
            return None
        self._seen.pop(execution, None)
        return claimed.epoch

    def due(self) -> float | None:
        """The earliest loop time at which a lease this worker saw held by another (or
        an unclaimed execution it defers) may be claimed, or None if there is none.

        The work loop polls again then rather than at its next backoff poll: a dead
        worker's lease is taken as soon as it counts as expired.
        """
        first: float | None = None
        for _, since in self._seen.values():
            if first is None or since < first:
                first = since
        for since in self._fresh.values():
            if first is None or since < first:
                first = since
        return None if first is None else first + self.ttl

    def keep_only(self, executions: Any) -> None:
        """Forget what was seen of the leases of executions not in ``executions`` (those
        the work loop no longer tries: finished, or running here)."""
        if self._seen:
            for execution in [e for e in self._seen if e not in executions]:
                del self._seen[execution]
        if self._fresh:
            for execution in [e for e in self._fresh if e not in executions]:
                del self._fresh[execution]

    async def renew(self, execution: str, epoch: int) -> bool:
        """Bump the beat of a lease this worker holds at ``epoch``; False if it was lost."""
        renewed = False

        def beat(value: Any) -> Any:
            nonlocal renewed
            current = None if value is None else Lease.from_meta(value)
            renewed = current is not None and (current.owner, current.epoch) == (self.owner, epoch)
            if current is None or not renewed:
                return KEEP
            return Lease(self.owner, epoch, current.beat + 1).to_meta()

        await self.store.meta_update("leases", execution, beat)
        return renewed

    async def release(self, execution: str, epoch: int) -> None:
        """Give the lease up (owner None, epoch kept) if this worker still holds it."""

        def free(value: Any) -> Any:
            current = None if value is None else Lease.from_meta(value)
            if current is None or (current.owner, current.epoch) != (self.owner, epoch):
                return KEEP
            return Lease(None, epoch, current.beat + 1).to_meta()

        await self.store.meta_update("leases", execution, free)
