"""What ``perper streams ls`` shows: streams joined with the executions that write them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from perper.runtime.ids import Status, is_internal_stream, start_order
from perper.runtime.records import ExecutionRecord
from perper.store.base import LogStore
from perper.store.index import IndexSpec


class StreamState(StrEnum):
    """What ``perper streams ls`` shows for a stream no execution writes."""

    SEALED = "sealed"
    OPEN = "open"


@dataclass(frozen=True, slots=True)
class StreamRow:
    """One stream as listed: its name, writing function, item count and status.

    ``status`` is the writing execution's (running, done, failed), or for a stream no
    execution writes, ``sealed`` or ``open``. ``first`` is the first seq still stored (above
    0 once an ephemeral stream was trimmed, docs/retention.md). ``index`` is an indexed stream's
    declaration (``((field, type), ...)``), None for others.
    """

    name: str
    function: str
    items: int
    status: Status | StreamState
    first: int = 0
    index: IndexSpec | None = None


async def list_streams(store: LogStore, *, run: str | None = None) -> list[StreamRow]:
    """Return a row per stream (of ``run``, if given), in start order; internal streams
    (recorded effects) are left out."""
    prefix = f"{run}/" if run else ""
    executions = {
        key: ExecutionRecord.from_meta(meta.value, key)
        for key, meta in await store.meta_scan("executions", prefix=prefix)
    }
    infos = {info.name: info for info in await store.streams(prefix=prefix)}
    indexes = await store.indexes(prefix=prefix)
    rows = []
    names = set(infos) | {k for k, e in executions.items() if e.kind != "launcher"}
    for name in sorted(names, key=start_order):
        if is_internal_stream(name):
            continue
        info = infos.get(name)
        execution = executions.get(name)
        if info is None and execution is not None:
            # Unlisted although its execution exists: ask the stream itself rather than
            # show 0 items (an Ignite store could leave a written stream unlisted).
            unlisted = await store.info(name)
            if unlisted.head or unlisted.sealed:
                info = unlisted
        items = info.head if info else 0
        first = await store.first_seq(name) if info else 0
        if execution is not None:
            rows.append(
                StreamRow(
                    name, execution.function, items, execution.status, first, indexes.get(name)
                )
            )
        else:
            rows.append(
                StreamRow(
                    name,
                    "",
                    items,
                    StreamState.SEALED if info and info.sealed else StreamState.OPEN,
                    first,
                    indexes.get(name),
                )
            )
    return rows


__all__ = ["StreamRow", "StreamState", "list_streams", "start_order"]
