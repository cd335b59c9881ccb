"""ReadOnlyStore: any :class:`LogStore` seen through a wrapper that refuses every write.

Replay (and any other tool that must leave a log untouched) opens its log through this one
wrapper, whatever the backend: reads, listings and waits go to the wrapped store; appends,
seals and metadata writes raise :class:`~perper.errors.StoreError` naming the store and
what was refused, before anything reaches the backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from perper.errors import StoreError
from perper.store.base import LogStore, Meta, QueryRow, StreamInfo
from perper.store.index import IndexSpec

__all__ = ["ReadOnlyStore"]


class ReadOnlyStore(LogStore):
    """A read-only view of ``store``.

    Args:
        store: the store to read.
        reason: appended to the refusal, e.g. ``"for replay"``.
        owned: close ``store`` when this wrapper is closed.
    """

    def __init__(self, store: LogStore, *, reason: str = "", owned: bool = True) -> None:
        super().__init__()
        self.inner = store
        self.url = store.url
        self.reason = reason
        self.owned = owned
        self._poll_interval_min = store._poll_interval_min
        self._poll_interval_max = store._poll_interval_max
        self.max_segment_bytes = store.max_segment_bytes
        self.max_item_bytes = store.max_item_bytes

    def _refuse(self, what: str) -> StoreError:
        reason = f" {self.reason}" if self.reason else ""
        return StoreError(f"{self.url} is open read-only{reason}; refusing to {what}")

    async def info(self, stream: str) -> StreamInfo:
        self._check_open()
        return await self.inner.info(stream)

    async def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        self._check_open()
        async for segment in self.inner.scan_segments(stream, start, stop):
            yield segment

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        self._check_open()
        raise self._refuse(f"write to {stream!r}")

    async def write_seal(self, stream: str, epoch: int) -> bool:
        self._check_open()
        raise self._refuse(f"seal {stream!r}")

    async def append(self, stream: str, seq: int, items: Any, *, epoch: int = 0) -> int:
        self._check_open()
        raise self._refuse(f"write to {stream!r}")

    async def seal(self, stream: str, *, epoch: int = 0) -> None:
        self._check_open()
        raise self._refuse(f"seal {stream!r}")

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        self._check_open()
        return await self.inner.lookup_keys(stream, keys)

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        self._check_open()
        return await self.inner.segment_keys(stream, start, stop)

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        self._check_open()
        raise self._refuse(f"write to {stream!r}")

    async def append_keyed(
        self, stream: str, items: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[int]:
        self._check_open()
        raise self._refuse(f"write to {stream!r}")

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        self._check_open()
        return await self.inner.streams(prefix=prefix)

    async def meta_get(self, table: str, key: str) -> Meta | None:
        self._check_open()
        return await self.inner.meta_get(table, key)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        self._check_open()
        raise self._refuse(f"write {table} {key!r}")

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        self._check_open()
        return await self.inner.meta_scan(table, prefix=prefix)

    async def first_seq(self, stream: str) -> int:
        self._check_open()
        return await self.inner.first_seq(stream)

    async def trim(self, stream: str, before_seq: int) -> int:
        self._check_open()
        raise self._refuse(f"trim {stream!r}")

    async def delete_stream(self, stream: str) -> None:
        self._check_open()
        raise self._refuse(f"delete {stream!r}")

    # Indexed streams: declarations and queries read through; declaring is a write.

    async def index_of(self, stream: str) -> IndexSpec | None:
        self._check_open()
        return await self.inner.index_of(stream)

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        self._check_open()
        return await self.inner.indexes(prefix=prefix)

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        self._check_open()
        raise self._refuse(f"index {stream!r}")

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
        self._check_open()
        return await self.inner.query_rows(
            stream, where, params, stop=stop, order_by=order_by, limit=limit
        )

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self.owned:
                await self.inner.close()
