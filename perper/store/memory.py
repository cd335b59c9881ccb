"""MemoryStore: the in-process store used by unit tests and the simulator."""

from __future__ import annotations

import asyncio
import bisect
import sqlite3
from collections.abc import AsyncIterator, Sequence
from typing import Any

from perper import codec
from perper.errors import FormatError, HeadMovedError
from perper.store.base import (
    LogStore,
    Meta,
    QueryRow,
    StreamInfo,
    check_table,
    read_segment,
    segment_items,
)
from perper.store.index import (
    IndexSpec,
    sqlite_create,
    sqlite_delete_rows,
    sqlite_insert,
    sqlite_rows,
    sqlite_select,
    sqlite_table,
)

#: The methods whose work MemoryStore's plain calls (append_now's write, info_now,
#: segment_now, write_waiter) do without a coroutine.
_STOOD_FOR = (
    "append",
    "write_segment",
    "info",
    "wait",
    "read_batches",
    "segments",
    "scan_segments",
)


class _Stream:
    __slots__ = ("data", "epoch", "first", "firsts", "head", "info", "sealed")

    def __init__(self) -> None:
        self.first = 0  # the first seq trim kept
        self.firsts: list[int] = []
        self.data: list[tuple[int, bytes]] = []
        self.head = 0
        self.sealed = False
        self.epoch = 0
        # The last StreamInfo handed out (immutable): reused while head, seal and epoch
        # are what it says, as readers ask for it once per pass.
        self.info: StreamInfo | None = None


class MemoryStore(LogStore):
    """Keeps encoded segments and metadata in dicts; nothing survives the process.

    Items are stored encoded, exactly as on disk, so a MemoryStore hands back copies and
    refuses unencodable items like every other store.
    """

    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.url = url
        self._streams: dict[str, _Stream] = {}
        self._meta: dict[str, dict[str, tuple[int, bytes]]] = {}
        # Ingest keys per stream: key -> seq, written with the segment that holds the item.
        self._keys: dict[str, dict[str, int]] = {}
        # And per keyed segment, its keys (first seq -> one key or None per item).
        self._segment_keys: dict[str, dict[int, list[str | None]]] = {}
        # Indexed streams: declaration and table number; the rows live in an in-memory
        # SQLite database (made on the first declaration), queried like SQLiteStore's.
        self._specs: dict[str, tuple[IndexSpec, int]] = {}
        self._index_db: sqlite3.Connection | None = None
        self._tables = 0  # index tables made (numbers are not reused after a delete)
        # The plain calls that stand in for coroutines (LogStore.append_now's write,
        # info_now, segment_now, write_waiter) are on only while the methods they stand in
        # for are this class's own: a subclass that changes one (a test's failing store,
        # replay's overlay that counts waits) sees every call go through it.
        cls = type(self)
        self._fast = all(getattr(cls, name) is getattr(MemoryStore, name) for name in _STOOD_FOR)
        # meta_get_shared and meta_scan_shared: each entry decoded once per value, while
        # meta_get and meta_scan are this class's own.
        self._shared = (
            cls.meta_get is MemoryStore.meta_get and cls.meta_scan is MemoryStore.meta_scan
        )
        self._decoded: dict[str, dict[str, tuple[bytes, Meta]]] = {}
        if self._fast:
            self._write_now = self.write_segment_now
            self._segment_at_now = self._stored_segment_at

    async def info(self, stream: str) -> StreamInfo:
        if self._closed:  # tested inline: no call per operation while open
            self._check_open()
        return self._info(stream)

    def info_now(self, stream: str) -> StreamInfo | None:
        # info above as a plain call (a reader's pass asks once, after every segment).
        if self._closed or not self._fast:
            return None  # info() raises StoreClosedError
        return self._info(stream)

    def _info(self, stream: str) -> StreamInfo:
        s = self._streams.get(stream)
        if s is None:
            return StreamInfo(stream, 0, False)
        info = s.info
        if info is None or info.head != s.head or info.sealed != s.sealed or info.epoch != s.epoch:
            info = s.info = StreamInfo(stream, s.head, s.sealed, s.epoch)
        return info

    async def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        if s is None:
            return
        index = max(bisect.bisect_right(s.firsts, start) - 1, 0)
        while index < len(s.firsts):
            first = s.firsts[index]
            if stop is not None and first >= stop:
                return
            count, data = s.data[index]
            if first + count > start:
                yield first, count, data
            # By seq, not by index: a trim may delete segments while we yield.
            index = bisect.bisect_left(s.firsts, first + count, lo=0)

    async def read_batches(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[tuple[int, list[Any]]]:
        # LogStore.read_batches over this store's own lists, in one async generator
        # instead of three (read_batches, segments, scan_segments): a reader's pass costs
        # one. The same checks: each segment's checksum and that it continues the one
        # before it, here; a read that does not end where the stream's head (or ``stop``)
        # says (a trim, a gap, a head beyond the stored items) goes on through
        # LogStore.read_batches, which raises what it finds with the usual message.
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        if s is None:
            return
        url = self.url
        firsts = s.firsts
        expected = start
        yielded = False
        while stop is None or expected < stop:
            index = bisect.bisect_right(firsts, expected) - 1
            if index < 0:
                break
            first = firsts[index]
            count, data = s.data[index]
            end = first + count
            if end <= expected:
                break
            if (yielded and first != expected) or count <= 0:
                raise FormatError(
                    f"{url}: stream {stream!r} has a segment at seq {first}..{end - 1} "
                    "overlapping the one before it: the log is corrupt"
                )
            if end > s.head:
                raise FormatError(
                    f"{url}: stream {stream!r} has head {s.head} but stored items up to seq "
                    f"{end - 1}: the log is corrupt"
                )
            items = read_segment(first, count, data, stream=stream, where=url)
            if first < start or (stop is not None and end > stop):
                lo = max(start - first, 0)
                items = items[lo : count if stop is None else min(stop - first, count)]
                first += lo
            yielded = True
            # Trims (ephemeral streams) and appends may change the lists while the reader
            # holds this batch: the next segment is looked up by seq again.
            yield first, items
            expected = end
        else:
            return
        if expected >= s.first and expected >= (s.head if stop is None else min(stop, s.head)):
            return
        async for batch in super().read_batches(stream, expected, stop):
            yield batch

    def _stored_segment_at(self, stream: str, seq: int) -> tuple[int, bytes, int] | None:
        # LogStore.append_now's look at the segment a recovering writer re-yields.
        if self._closed:
            return None
        s = self._streams.get(stream)
        if s is None or seq < s.first:
            return None
        index = bisect.bisect_left(s.firsts, seq)
        if index == len(s.firsts) or s.firsts[index] != seq:
            return None
        count, data = s.data[index]
        return count, data, s.head

    def write_waiter(self, stream: str, seq: int) -> asyncio.Future[None] | None:
        # Every write to this store goes through this process and notifies.
        if self._closed or not self._fast:
            return None  # wait() raises StoreClosedError
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        s = self._streams.get(stream)
        if s is not None and (s.head > seq or s.sealed):
            future.set_result(None)
        else:
            self._waiters.setdefault(stream, []).append(future)
        return future

    def segment_now(self, stream: str, start: int, stop: int) -> tuple[int, list[Any]] | None:
        # The first pass of read_batches above, as a plain call: a reader woken for one
        # new segment (small flushes) pays no async generator for it. Anything but the
        # plain case goes to read_batches, which names what it finds.
        if self._closed or not self._fast:
            return None
        s = self._streams.get(stream)
        if s is None or start < s.first:
            return None
        firsts = s.firsts
        index = bisect.bisect_right(firsts, start) - 1
        if index < 0:
            return None
        first = firsts[index]
        count, data = s.data[index]
        end = first + count
        if end <= start or count <= 0 or end > s.head:
            return None
        items = read_segment(first, count, data, stream=stream, where=self.url)
        if first < start or end > stop:
            lo = max(start - first, 0)
            items = items[lo : min(stop - first, count)]
            first += lo
        return first, items

    async def read(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[tuple[int, Any]]:
        async for first, items in self.read_batches(stream, start, stop):
            for seq, item in enumerate(items, first):
                yield seq, item

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        self.write_segment_now(stream, seq, count, data, epoch)

    def write_segment_now(self, stream: str, seq: int, count: int, data: bytes, epoch: int) -> bool:
        """:meth:`write_segment`, done before it returns (this store never suspends):
        for a caller in the same process that would otherwise await a coroutine which
        cannot wait (the simulator's store views, one per worker, on every write), and
        :meth:`LogStore.append_now`'s write (hence it returns True).

        Raises:
            HeadMovedError: ``seq`` is not the head, the stream is sealed, or a writer
                with a higher epoch has written to it.
        """
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        if s.head != seq or s.sealed or s.epoch > epoch:
            raise HeadMovedError(stream)
        indexed = self._specs.get(stream)
        if indexed is not None:
            self._index(stream, indexed, seq, data)
        s.firsts.append(seq)
        s.data.append((count, data))
        s.head = seq + count
        s.epoch = epoch
        return True

    async def write_seal(self, stream: str, epoch: int) -> bool:
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        if s.epoch > epoch:
            return False
        s.sealed = True
        s.epoch = epoch
        return True

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        if self._closed:
            self._check_open()
        return [
            StreamInfo(name, s.head, s.sealed, s.epoch)
            for name, s in sorted(self._streams.items())
            if name.startswith(prefix)
        ]

    async def meta_get(self, table: str, key: str) -> Meta | None:
        if self._closed:
            self._check_open()
        check_table(table)
        entry = self._meta.get(table, {}).get(key)
        if entry is None:
            return None
        return Meta(entry[0], codec.unpack(entry[1]))

    async def meta_get_shared(self, table: str, key: str) -> Meta | None:
        if not self._shared:
            return await self.meta_get(table, key)
        if self._closed:
            self._check_open()
        check_table(table)
        entry = self._meta.get(table, {}).get(key)
        if entry is None:
            return None
        return self._shared_meta(table, key, entry)

    async def meta_scan_shared(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        if not self._shared:
            return await self.meta_scan(table, prefix=prefix)
        if self._closed:
            self._check_open()
        check_table(table)
        rows = self._meta.get(table, {})
        shared = self._shared_meta
        return [
            (key, shared(table, key, entry))
            for key, entry in sorted(rows.items())
            if key.startswith(prefix)
        ]

    def _shared_meta(self, table: str, key: str, entry: tuple[int, bytes]) -> Meta:
        # Decoded once per written value: the cached Meta is the entry's while its
        # bytes are the very object it was decoded from and its version the entry's
        # (every write moves the version, even one that stores equal bytes).
        decoded = self._decoded.get(table)
        if decoded is None:
            decoded = self._decoded[table] = {}
        hit = decoded.get(key)
        if hit is not None and hit[0] is entry[1] and hit[1].version == entry[0]:
            return hit[1]
        meta = Meta(entry[0], codec.unpack(entry[1]))
        decoded[key] = (entry[1], meta)
        return meta

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        if self._closed:
            self._check_open()
        check_table(table)
        rows = self._meta.setdefault(table, {})
        current = rows.get(key)
        if (current[0] if current else 0) != version:
            return None
        rows[key] = (version + 1, codec.pack(value, what="metadata"))
        return version + 1

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        if self._closed:
            self._check_open()
        check_table(table)
        rows = self._meta.get(table, {})
        return [
            (key, Meta(version, codec.unpack(data)))
            for key, (version, data) in sorted(rows.items())
            if key.startswith(prefix)
        ]

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        if self._closed:
            self._check_open()
        stored = self._keys.get(stream)
        if not stored:
            return {}
        return {key: stored[key] for key in keys if key in stored}

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        await self.write_segment(stream, seq, count, data, 0)
        if keys is None:
            return
        stored = self._keys.setdefault(stream, {})
        for offset, key in enumerate(keys):
            if key is not None:
                stored.setdefault(key, seq + offset)
        self._segment_keys.setdefault(stream, {})[seq] = list(keys)

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        if self._closed:
            self._check_open()
        return [
            (first, list(keys))
            for first, keys in self._segment_keys.get(stream, {}).items()
            if first + len(keys) > start and (stop is None or first < stop)
        ]

    # ---------------------------------------------------------------- retention

    async def first_seq(self, stream: str) -> int:
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        return 0 if s is None else s.first

    async def trim(self, stream: str, before_seq: int) -> int:
        if self._closed:
            self._check_open()
        s = self._streams.get(stream)
        if s is None:
            return 0
        drop = 0
        while drop < len(s.firsts) and s.firsts[drop] + s.data[drop][0] <= before_seq:
            drop += 1
        if drop:
            last = drop - 1
            s.first = max(s.first, s.firsts[last] + s.data[last][0])
            del s.firsts[:drop], s.data[:drop]
            indexed = self._specs.get(stream)
            if indexed is not None and self._index_db is not None:
                sqlite_delete_rows(self._index_db, sqlite_table(indexed[1]), below=s.first)
            if self._compared is not None and self._compared[0] == stream:
                self._compared = None
        return s.first

    async def delete_stream(self, stream: str) -> None:
        if self._closed:
            self._check_open()
        self._streams.pop(stream, None)
        self._keys.pop(stream, None)
        self._segment_keys.pop(stream, None)
        indexed = self._specs.pop(stream, None)
        if indexed is not None and self._index_db is not None:
            sqlite_delete_rows(self._index_db, sqlite_table(indexed[1]))
        if self._compared is not None and self._compared[0] == stream:
            self._compared = None
        self.notify(stream)

    # ---------------------------------------------------------- indexed streams

    def _index(self, stream: str, indexed: tuple[IndexSpec, int], seq: int, data: bytes) -> None:
        spec, number = indexed
        assert self._index_db is not None
        rows = sqlite_rows(spec, stream, seq, data, segment_items(data))
        sqlite_insert(self._index_db, sqlite_table(number), spec, rows)

    async def index_of(self, stream: str) -> IndexSpec | None:
        if self._closed:
            self._check_open()
        indexed = self._specs.get(stream)
        return None if indexed is None else indexed[0]

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        if self._closed:
            self._check_open()
        return {
            name: spec for name, (spec, _) in sorted(self._specs.items()) if name.startswith(prefix)
        }

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        if self._closed:
            self._check_open()
        indexed = self._specs.get(stream)
        if indexed is not None:
            return indexed[0]
        if self._index_db is None:
            self._index_db = sqlite3.connect(":memory:", isolation_level=None)
        indexed = (spec, self._tables)
        self._tables += 1
        sqlite_create(self._index_db, sqlite_table(indexed[1]), spec)
        s = self._streams.get(stream)
        for first, (_, data) in zip(s.firsts if s else [], s.data if s else [], strict=True):
            self._index(stream, indexed, first, data)
        self._specs[stream] = indexed
        return spec

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
        if self._closed:
            self._check_open()
        indexed = self._specs.get(stream)
        if indexed is None or self._index_db is None:
            return []
        return sqlite_select(
            self._index_db,
            sqlite_table(indexed[1]),
            where,
            params,
            stop=stop,
            order_by=order_by,
            limit=limit,
        )

    async def close(self) -> None:
        self._closed = True
        if self._index_db is not None:
            self._index_db.close()
            self._index_db = None
