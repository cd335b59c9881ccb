"""Ephemeral streams: deleting the segments every reader of a stream has durably passed.

No separate service: after a reader's checkpoint is written, and when a reader finishes,
its execution calls :meth:`Retention.trim_passed` for the streams it reads. The rule
(docs/retention.md) is the minimum, over every registered reader of the stream (the
executions of its run whose parameters hold a :class:`~perper.StreamRef` to it), of what
that reader can still need:

* done, cancelled or destroyed: nothing (it never runs again);
* ``recovery="checkpoint"``: the position its last checkpoint records for its open read of
  the stream (its whole stream if that checkpoint was taken after the function returned;
  from seq 0 if no checkpoint records a read of it yet);
* ``recovery="replay"`` (or a function this app does not know): everything, until it is
  done, since recovery re-reads its inputs from the start.

Readers are registered when they are started, so nothing is trimmed while more may come:
neither a stream no execution reads yet, nor one whose starter (the execution that called
``ctx.start`` for its writer, usually the launcher) is still running.
"""

from __future__ import annotations

import logging
from typing import Any

from perper import codec
from perper.app import App
from perper.runtime.ids import Status
from perper.runtime.records import ExecutionRecord
from perper.store.base import LogStore
from perper.streamref import StreamRef

__all__ = [
    "Retention",
    "checkpoint_needs",
    "query_effect",
    "query_range",
    "referenced_streams",
    "stream_readers",
]

log = logging.getLogger("perper.runtime")

#: Statuses after which an execution never reads again.
_FINISHED = frozenset({Status.DONE, Status.CANCELLED, Status.DESTROYED})
_ALL = 1 << 62


def referenced_streams(value: Any, found: set[str] | None = None) -> set[str]:
    """The names of every :class:`StreamRef` inside ``value`` (decoded parameters)."""
    found = set() if found is None else found
    if isinstance(value, StreamRef):
        found.add(value.stream)
    elif isinstance(value, dict):
        for item in value.values():
            referenced_streams(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            referenced_streams(item, found)
    return found


async def stream_readers(store: LogStore, stream: str) -> list[ExecutionRecord]:
    """The executions whose parameters refer to ``stream`` (its registered readers), among
    the executions of the run that writes it."""
    writer = await store.meta_get("executions", stream)
    run = ExecutionRecord.from_meta(writer.value).run if writer is not None else ""
    prefix = f"{run}/" if run else ""
    readers = []
    for key, meta in await store.meta_scan("executions", prefix=prefix):
        if key == stream:
            continue
        record = ExecutionRecord.from_meta(meta.value)
        if stream in referenced_streams(codec.unpack(record.params)):
            readers.append(record)
    return readers


def query_effect(start: int, stop: int) -> Any:
    """The recorded value of a ``ctx.query`` over ``[start, stop)``: the bare ``stop`` when
    it starts at seq 0 (as every query was recorded before trims could delete index rows),
    ``[start, stop]`` otherwise."""
    return stop if start == 0 else [start, stop]


def query_range(recorded: Any) -> tuple[int, int]:
    """``(start, stop)`` of a ``ctx.query`` from its recorded effect (:func:`query_effect`)."""
    if isinstance(recorded, (list, tuple)):
        start, stop = recorded
        return int(start), int(stop)
    return 0, int(recorded)


def checkpoint_needs(checkpoint: Any, stream: str) -> int:
    """The first seq of ``stream`` that a ``recovery="checkpoint"`` reader whose last
    durable checkpoint is ``checkpoint`` (None: none yet) may still read: what a trim must
    keep for it (a large number if nothing)."""
    if checkpoint is None:
        return 0
    if checkpoint.get("returned"):
        return _ALL
    reads = [slot for slot in checkpoint["positions"] if slot[0] == stream]
    if not reads:
        return 0  # it has not opened its read of the stream yet
    open_reads = [slot[1] for slot in reads if len(slot) < 4 or slot[3] is None]
    return int(min(open_reads)) if open_reads else _ALL


class Retention:
    """Trims the ephemeral streams one execution reads, for the app it runs in."""

    def __init__(self, store: LogStore, app: App) -> None:
        self.store = store
        self.app = app
        self._ephemeral: dict[str, bool] = {}  # stream -> its writer is ephemeral
        self._started_all: set[str] = set()  # streams whose starter has finished
        # An app without ephemeral functions has nothing to trim: no look-ups at all.
        self._any = any(fn.retention == "ephemeral" for fn in app.functions.values())

    async def is_ephemeral(self, stream: str) -> bool:
        """Whether ``stream`` is the output of a ``retention="ephemeral"`` function."""
        known = self._ephemeral.get(stream)
        if known is None:
            entry = await self.store.meta_get("executions", stream)
            known = False
            if entry is not None:
                fn = self.app.functions.get(ExecutionRecord.from_meta(entry.value).function)
                known = fn is not None and fn.retention == "ephemeral"
            self._ephemeral[stream] = known
        return known

    async def _starter_done(self, stream: str) -> bool:
        """Whether the execution that started ``stream``'s writer is finished, so that it
        can start no more readers of it (it holds the ref that ``ctx.start`` returned)."""
        if stream in self._started_all:
            return True
        entry = await self.store.meta_get("executions", stream)
        if entry is None:
            return False
        parent = ExecutionRecord.from_meta(entry.value).parent
        if parent is not None:
            starter = await self.store.meta_get("executions", parent)
            if starter is None or Status(starter.value["status"]) not in _FINISHED:
                return False
        self._started_all.add(stream)
        return True

    async def needed_from(self, stream: str) -> int | None:
        """The first seq of ``stream`` some registered reader may still read (a large
        number if none needs any), or None while more readers may register: none is
        registered yet, or the execution that started the stream is still running."""
        if not await self._starter_done(stream):
            return None
        readers = await stream_readers(self.store, stream)
        if not readers:
            return None
        needed = _ALL
        for reader in readers:
            needed = min(needed, await self._reader_needs(reader, stream))
            if needed == 0:
                break
        return needed

    async def _reader_needs(self, reader: ExecutionRecord, stream: str) -> int:
        if reader.status in _FINISHED:
            return _ALL
        fn = self.app.functions.get(reader.function)
        if fn is None or fn.recovery != "checkpoint":
            return 0  # recovery re-reads from the start until it is done
        entry = await self.store.meta_get("checkpoints", reader.id)
        return checkpoint_needs(None if entry is None else entry.value, stream)

    async def trim_passed(self, streams: list[str]) -> None:
        """Trim each ephemeral stream of ``streams`` below what every reader passed."""
        if not self._any:
            return
        for stream in dict.fromkeys(streams):
            if not await self.is_ephemeral(stream):
                continue
            needed = await self.needed_from(stream)
            if needed is None or needed <= 0:
                continue
            head = await self.store.head(stream)
            first = await self.store.trim(stream, min(needed, head))
            log.debug("trimmed %s below seq %d", stream, first)
