"""Destroying a stream: ``ctx.destroy(ref)`` and ``perper streams rm``.

The writer's execution is marked ``cancelled`` first (so no worker resumes it, and a
worker running it stops at its next write), then the stream (with its index, if it is
indexed) and the writer's recorded effects are deleted from the store. A stream that a
running execution still reads is refused unless ``force``: its reader would wait forever
on a stream that is gone.
"""

from __future__ import annotations

from typing import Any

from perper.errors import ConfigError
from perper.runtime.ids import EFFECTS_SUFFIX, RUNNING, Status
from perper.runtime.retention import stream_readers
from perper.store.base import KEEP, LogStore

__all__ = ["cancel_writer", "destroy_stream", "running_readers"]


async def running_readers(store: LogStore, stream: str) -> list[str]:
    """The ids of the running executions whose parameters refer to ``stream``."""
    return [r.id for r in await stream_readers(store, stream) if r.status == RUNNING]


async def cancel_writer(store: LogStore, stream: str) -> bool:
    """Mark the execution writing ``stream`` cancelled if it is running; return whether an
    execution writes ``stream`` at all."""

    def cancel(value: Any) -> Any:
        if value is None or value["status"] != str(RUNNING):
            return KEEP
        return {**value, "status": str(Status.CANCELLED)}

    return await store.meta_update("executions", stream, cancel) is not None


async def destroy_stream(store: LogStore, stream: str, *, force: bool = False) -> None:
    """Cancel the writer of ``stream`` and delete the stream (and its recorded effects).

    Raises:
        ConfigError: no such stream, or a running execution reads it and not ``force``.
    """
    info = await store.info(stream)
    written = await cancel_writer(store, stream) if force else None
    if written is None:
        readers = await running_readers(store, stream)
        if readers:
            raise ConfigError(
                f"stream {stream!r} is read by the running execution(s) "
                f"{', '.join(map(repr, readers))}; stop them first, or pass --force to "
                "delete it anyway (they then wait on a stream that is gone)"
            )
        written = await cancel_writer(store, stream)
    if (
        not written
        and info.head == 0
        and not info.sealed
        and not await store.streams(prefix=stream)
    ):
        raise ConfigError(
            f"no stream {stream!r} in {store.url}; 'perper streams ls' lists the streams"
        )
    await store.delete_stream(stream)
    await store.delete_stream(stream + EFFECTS_SUFFIX)
