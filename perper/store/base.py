"""The storage contract: :class:`LogStore` and the records it speaks.

A store holds **streams** — dense, append-only sequences of items at seq 0, 1, 2, ... —
and a little **metadata** (executions, checkpoints, leases, runs) behind a
compare-and-set primitive. Items are stored in **segments**: one record per appended
batch, packed by :func:`encode_segment`.

Backends implement a handful of primitives; the contract's conveniences — idempotent
:meth:`LogStore.append`, :meth:`LogStore.read`, :meth:`LogStore.wait`,
:meth:`LogStore.meta_update` — are built from them here, once, for every backend.

The **segment layer** is public, for tools that move or compare segments without decoding
their items (mirror, replay, the simulator):

* :meth:`LogStore.segments` — the stored segments overlapping a seq range, as
  ``(first_seq, count, data)``, in order;
* :meth:`LogStore.write_segment` — store one encoded segment exactly at the head
  (atomically with moving the head), or raise :class:`HeadMovedError`;
* :meth:`LogStore.write_seal` — mark a stream sealed unless a higher epoch wrote it;
* :meth:`LogStore.notify` — wake this process's waiters on a stream after a write that
  did not go through :meth:`LogStore.append` or :meth:`LogStore.seal`.

``data`` is what :func:`encode_segment` makes and :func:`decode_segment` reads; copying
it between stores unchanged is a valid copy.

**Closing.** :meth:`LogStore.close` is idempotent; every other call on a closed store
raises :class:`~perper.errors.StoreClosedError`.
"""

from __future__ import annotations

import asyncio
import struct
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from perper import codec
from perper.errors import (
    ConfigError,
    ConflictError,
    EncodeError,
    FencedError,
    FormatError,
    GapError,
    HeadMovedError,
    SealedError,
    StoreClosedError,
    StoreError,
    TooLargeError,
    TrimmedError,
)
from perper.store.index import (
    IndexSpec,
    check_order_by,
    check_params,
    check_where,
    item_at,
    normalize_index,
)
from perper.store.index import describe as describe_index

__all__ = [
    "KEEP",
    "META_TABLES",
    "HeadMovedError",
    "LogStore",
    "Meta",
    "MetaWrite",
    "QueryRow",
    "SegmentWrite",
    "StreamInfo",
    "check_segment",
    "check_table",
    "decode_segment",
    "encode_segment",
    "read_segment",
    "segment_items",
    "segment_packed",
    "unpack_meta",
]

#: What :meth:`LogStore.query_rows` returns per matching row: ``(seq, locator, segment)``;
#: ``locator`` (or None) is where the item's bytes sit in its segment
#: (:func:`perper.store.index.item_locators`), ``segment`` (or None) the row's stored
#: segment ``(first_seq, count, data)`` if the backend fetched it with the row.
QueryRow = tuple[int, int | None, tuple[int, int, bytes] | None]

#: Metadata tables every store provides.
META_TABLES = ("runs", "executions", "checkpoints", "leases")


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a store knows of one stream.

    Attributes:
        name: the stream's name.
        head: the next free seq, which is also the number of items.
        sealed: True once the stream's writer finished it; nothing can be appended after.
        epoch: the highest lease epoch that wrote to the stream (0: none given). Writes
            carrying a lower epoch are refused with :class:`FencedError`.
    """

    name: str
    head: int
    sealed: bool = False
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Meta:
    """A metadata value with its version (1 for the first write, +1 on each CAS)."""

    version: int
    value: Any


@dataclass(frozen=True, slots=True)
class SegmentWrite:
    """One segment of a :meth:`LogStore.write_group`: ``data`` (``count`` items, from
    :func:`encode_segment`) exactly at head ``seq`` of ``stream`` with lease ``epoch``,
    then the stream sealed if ``seal``."""

    stream: str
    seq: int
    count: int
    data: bytes
    epoch: int = 0
    seal: bool = False


@dataclass(frozen=True, slots=True)
class MetaWrite:
    """One compare-and-set of a :meth:`LogStore.write_group`: ``value`` at ``key`` of
    ``table`` if the entry's version is ``version`` (0: absent)."""

    table: str
    key: str
    value: Any
    version: int = 0


#: ``fn`` of :meth:`LogStore.meta_update`: the current value (None: absent) -> the new one.
Update = Callable[[Any], Any]


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"


#: Returned by the ``fn`` of :meth:`LogStore.meta_update` to leave the entry as it is.
KEEP: Any = _Keep()


class LogStore(ABC):
    """An ordered, durable log of streams plus compare-and-set metadata.

    Stores are async context managers; ``async with open_store(url) as store: ...``.
    """

    #: The URL the store was opened with (credentials masked).
    url: str = ""

    #: The most encoded bytes of one stored segment: :meth:`append` splits larger
    #: batches into several segments (an item larger than this is a segment of its own).
    max_segment_bytes: int = 4 * 1024 * 1024
    #: The most encoded bytes of one item this store can hold: larger ones raise
    #: :class:`~perper.errors.TooLargeError` naming the limit.
    max_item_bytes: int = 999_000_000

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # The last stored segment an append compared against, decoded: (stream, first
        # seq, items). Segments never change once written, so it cannot go stale; a
        # recovering writer re-yielding in small flushes reads each segment once.
        self._compared: tuple[str, int, list[Any]] | None = None
        # Per stream, the head this store's own last append left (a guess: another
        # writer or a delete may have moved it since; see append).
        self._appended: dict[str, int] = {}
        self._closed = False

    def _check_open(self) -> None:
        """Raise :class:`StoreClosedError` if :meth:`close` was called."""
        if self._closed:
            raise StoreClosedError(f"{self.url}: the store is closed; open a new one")

    # ----------------------------------------------------------------- primitives

    @abstractmethod
    async def info(self, stream: str) -> StreamInfo:
        """Return the stream's head and sealed flag (head 0 for a stream never written)."""

    @abstractmethod
    def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        """Yield ``(first_seq, count, data)`` of the stored segments overlapping
        ``[start, stop)``, in seq order, as the backend holds them.

        The backend primitive; callers use :meth:`segments`, which also checks them.
        """

    @abstractmethod
    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        """Atomically store one segment (``data`` from :func:`encode_segment`, ``count``
        items) at ``seq``, move the head to ``seq + count`` and raise the stream's epoch
        to ``epoch``.

        Part of the public segment layer: it neither compares items nor wakes waiters
        (call :meth:`notify` after it).

        Raises:
            HeadMovedError: the head is not ``seq``, the stream is sealed, or its epoch is
                above ``epoch`` (the caller re-reads :meth:`info` to tell which).
        """

    @abstractmethod
    async def write_seal(self, stream: str, epoch: int) -> bool:
        """Atomically mark the stream sealed and raise its epoch to ``epoch``, unless its
        epoch is above ``epoch``. Return False in that case. Does not wake waiters."""

    @abstractmethod
    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        """Return every stream whose name starts with ``prefix``, sorted by name."""

    @abstractmethod
    async def meta_get(self, table: str, key: str) -> Meta | None:
        """Return the metadata entry of ``key`` in ``table``, or None."""

    @abstractmethod
    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        """Write ``value`` if the entry's current version is ``version`` (0: absent).

        Returns the new version, or None if the current version differs.
        """

    @abstractmethod
    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        """Return ``(key, entry)`` of every key in ``table`` starting with ``prefix``, sorted."""

    async def meta_get_shared(self, table: str, key: str) -> Meta | None:
        """:meth:`meta_get` for a caller that only looks at the value: a backend may hand
        every such caller the same decoded value while the entry is unchanged, so the
        caller must not change it (the work loop's polls, which read the same rows poll
        after poll)."""
        return await self.meta_get(table, key)

    async def meta_scan_shared(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        """:meth:`meta_scan` with values shared as for :meth:`meta_get_shared`."""
        return await self.meta_scan(table, prefix=prefix)

    @abstractmethod
    async def close(self) -> None:
        """Release the store's resources. Idempotent; afterwards every other call raises
        :class:`~perper.errors.StoreClosedError`."""

    # ------------------------------------------------------------- segment layer

    async def segments(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        """Yield ``(first_seq, count, data)`` of the segments overlapping ``[start, stop)``
        (``stop`` None: to the end stored now), in seq order; decode ``data`` with
        :func:`decode_segment`.

        Every read path of the contract goes through here, and checks what it reads: each
        segment's checksum, that segments are contiguous (no seq missing between them),
        and that the stored items reach the head the store reports and do not run past
        it. A log failing any check raises :class:`~perper.errors.FormatError` naming the
        store, the stream and the seqs, instead of handing on damaged or missing items.
        """
        expected = start  # the next seq the reader must get
        yielded = False
        promised: int | None = None  # the end a head read before this scan promises
        head = 0
        while True:
            scan = self.scan_segments(stream, expected, stop)
            async for first, count, data in scan:
                end = first + count
                if first > expected:
                    # A trim may also delete what this scan was about to read (a reader
                    # behind what every registered reader passed: a superseded owner).
                    await self.check_untrimmed(stream, expected)
                    raise FormatError(
                        f"{self.url}: stream {stream!r} is missing the items at seq "
                        f"{expected}..{first - 1} (the next stored segment starts at seq "
                        f"{first}): the log is corrupt"
                    )
                if (yielded and first < expected) or end <= expected or count <= 0:
                    raise FormatError(
                        f"{self.url}: stream {stream!r} has a segment at seq {first}.."
                        f"{end - 1} overlapping the one before it: the log is corrupt"
                    )
                if stop is not None and end > stop and self._head_apart:
                    # Only a range read ends inside a segment: is that segment's end past
                    # the head (a head lowered by hand)? Checked before it is handed out.
                    now = (await self.info(stream)).head
                    if 0 < now < end:
                        raise FormatError(
                            f"{self.url}: stream {stream!r} has head {now} but stored items "
                            f"up to seq {end - 1}: the log is corrupt"
                        )
                check_segment(first, count, data, stream=stream, where=self.url)
                yielded = True
                yield first, count, data
                expected = end
                if stop is not None and expected >= stop:
                    # Close the scan now rather than leave it to the event loop's async
                    # generator finaliser (a task and a loop turn per read pass).
                    aclose = getattr(scan, "aclose", None)
                    if aclose is not None:
                        await aclose()
                    return
            if promised is not None:
                if expected >= promised:
                    return
                await self.check_untrimmed(stream, expected)
                raise FormatError(
                    f"{self.url}: stream {stream!r} has head {head} but its stored items end "
                    f"at seq {expected} (seq {expected}..{promised - 1} are missing): the log "
                    "is corrupt"
                )
            head = (await self.info(stream)).head
            if yielded and 0 < head < expected:
                # Heads only grow (0: the stream was deleted while it was read), so stored
                # items past the head were never appended through it: a corrupt head.
                raise FormatError(
                    f"{self.url}: stream {stream!r} has head {head} but stored items up to seq "
                    f"{expected - 1}: the log is corrupt"
                )
            promised = head if stop is None else min(stop, head)
            if promised <= expected:
                return
            # A writer may have appended since the scan began: look once more; the items
            # this head promises must all be there now.

    # ---------------------------------------------------------------- conveniences

    async def head(self, stream: str) -> int:
        """Return the next free seq of ``stream`` (its number of items)."""
        return (await self.info(stream)).head

    async def append(self, stream: str, seq: int, items: Sequence[Any], *, epoch: int = 0) -> int:
        """Write ``items`` at ``seq, seq + 1, ...`` and return the new head.

        Idempotent: items equal to those already stored at their positions are skipped.
        ``epoch`` is the writer's lease epoch: new items are refused once a writer with a
        higher epoch has written to the stream (fencing a stale owner).

        Raises:
            ConflictError: a different item is stored at one of the positions.
            GapError: ``seq`` is beyond the head.
            SealedError: the stream is sealed and ``items`` go past its end.
            FencedError: a writer with a higher epoch has written to the stream.
            EncodeError: an item is not encodable (``index`` names it).
        """
        if seq < 0:
            raise GapError(stream, seq, 0)
        if type(items) is not list:
            items = list(items)
        stalled = 0
        # A writer appending where its own last append ended (the usual case) writes
        # without reading the stream's info first: write_segment refuses unless the head
        # is still there, the stream unsealed and no higher epoch wrote (the conditions
        # the checked path below writes under), and a refusal falls through to that path.
        guessed = bool(items) and self._appended.get(stream) == seq
        while True:
            if guessed:
                guessed = False
                info = StreamInfo(stream, seq, False, epoch)
            else:
                info = await self.info(stream)
            head = info.head
            if seq > head:
                raise GapError(stream, seq, head)
            if seq < head:
                overlap = min(head - seq, len(items))
                await self._check_overlap(stream, seq, items[:overlap])
                items = items[overlap:]
                seq += overlap
            if not items:
                return max(head, seq)
            if info.sealed:
                raise SealedError(stream, seq, head)
            if info.epoch > epoch:
                raise FencedError(stream, epoch, info.epoch)
            chunks = self._chunks(stream, seq, items)
            try:
                for chunk, data in chunks:
                    await self.write_segment(stream, seq, len(chunk), data, epoch)
                    self.notify(stream)
                    seq += len(chunk)
                    self._appended[stream] = seq
                    items = items[len(chunk) :]
            except HeadMovedError:
                # Another writer got there first: compare against what it wrote. A store
                # that keeps refusing at a head that does not move is broken, not raced.
                self._appended.pop(stream, None)
                after = await self.info(stream)
                if (after.head, after.sealed, after.epoch) == (head, info.sealed, info.epoch):
                    stalled += 1
                    if stalled >= 3:
                        raise StoreError(
                            f"{self.url}: stream {stream!r} refuses writes at seq {seq} "
                            f"although its head is {head}: the store is inconsistent"
                        ) from None
                continue
            return seq

    #: A :meth:`write_segment` done before it returns, for a backend whose writes never
    #: suspend: ``(stream, seq, count, data, epoch) -> bool``, False when it cannot write
    #: now (nothing written), raising :class:`~perper.errors.HeadMovedError` as
    #: write_segment does. None (the default): :meth:`append_now` always declines.
    _write_now: Callable[[str, int, int, bytes, int], bool] | None = None

    def append_now(self, stream: str, seq: int, items: list[Any], *, epoch: int = 0) -> int | None:
        """:meth:`append`'s usual case done before it returns, or nothing: the writer
        appends one segment's worth of new items where its own last append through this
        store ended, on a backend that can write without suspending. Returns the new head,
        or None when any of that does not hold -- then nothing was written and the caller
        uses :meth:`append`, which handles (and names) every other case: overlaps with
        stored items, gaps, seals, fencing, unencodable or oversized items. ``items`` is
        encoded before this returns and not kept.

        One other case is done here too: a recovering writer re-yielding exactly one
        stored segment (the same seq, count and encoded bytes), which stores nothing and
        returns the head; items that differ in any way go to :meth:`append`, which names
        the first difference.

        For the runtime's flush of small segments (a function yielding one item at a
        time, the batch sizes the simulator draws), where the coroutine layers of
        :meth:`append` are most of a segment's cost.
        """
        write = self._write_now
        if write is None or not items:
            return None
        if self._appended.get(stream) != seq:
            return self._stored_again(stream, seq, items)
        try:
            data = encode_segment(items)
        except EncodeError:
            return None  # append raises it, naming the item
        if len(data) > min(self.max_segment_bytes, self.max_item_bytes):
            return None
        count = len(items)
        try:
            if not write(stream, seq, count, data, epoch):
                return None
        except HeadMovedError:
            self._appended.pop(stream, None)
            return None
        self.notify(stream)
        seq += count
        self._appended[stream] = seq
        return seq

    #: The stored segment that starts at a seq, known without suspending:
    #: ``(stream, seq) -> (count, data, head)`` or None (none starts there, or the
    #: backend cannot tell now). None (the default): no re-append is recognised here.
    _segment_at_now: Callable[[str, int], tuple[int, bytes, int] | None] | None = None

    def _stored_again(self, stream: str, seq: int, items: list[Any]) -> int | None:
        """:meth:`append_now`'s recognition of a re-yielded segment: the head if
        ``items`` encode to exactly the segment stored at ``seq``, else None."""
        lookup = self._segment_at_now
        stored = None if lookup is None else lookup(stream, seq)
        if stored is None or stored[0] != len(items):
            return None
        try:
            data = encode_segment(items)
        except EncodeError:
            return None
        return stored[2] if data == stored[1] else None

    def _chunks(self, stream: str, seq: int, items: list[Any]) -> list[tuple[list[Any], bytes]]:
        """``items`` as segments of at most :attr:`max_segment_bytes` encoded bytes each
        (an item larger than that is a segment of its own, up to :attr:`max_item_bytes`)."""
        data = encode_segment(items)
        if len(data) <= min(self.max_segment_bytes, self.max_item_bytes):
            return [(items, data)]
        sizes = [len(codec.pack(item, what="item")) for item in items]
        for index, size in enumerate(sizes):
            if size > self.max_item_bytes:  # refused before any of the batch is written
                raise TooLargeError(stream, seq + index, size, self.max_item_bytes, self.url)
        chunks: list[tuple[list[Any], bytes]] = []
        lo = 0
        while lo < len(items):
            hi, total = lo + 1, sizes[lo]
            while hi < len(items) and total + sizes[hi] <= self.max_segment_bytes - 64:
                total += sizes[hi]
                hi += 1
            chunks.append((items[lo:hi], encode_segment(items[lo:hi])))
            lo = hi
        return chunks

    async def _check_overlap(self, stream: str, seq: int, items: list[Any]) -> None:
        position, end = seq, seq + len(items)
        compared = self._compared
        if (
            compared is not None
            and compared[0] == stream
            and compared[1] <= seq < end <= (compared[1] + len(compared[2]))
        ):
            self._compare(stream, seq, items, compared[1], compared[2])
            return
        try:
            async for first, count, data in self.segments(stream, seq, end):
                stored = decode_segment(
                    first, count, data, stream=stream, where=self.url, checked=True
                )
                self._compared = (stream, first, stored)
                self._compare(stream, seq, items, first, stored)
                position = first + count
        except TrimmedError as trimmed:
            # A recovering writer of an ephemeral stream re-yields items every reader has
            # passed and the store deleted: there is nothing left to compare them with.
            if trimmed.first < end:
                lo = trimmed.first - seq
                await self._check_overlap(stream, trimmed.first, items[lo:])
            return
        if position < end:
            raise StoreError(f"stream {stream!r} is missing stored items near seq {position}")

    @staticmethod
    def _compare(stream: str, seq: int, items: list[Any], first: int, stored: list[Any]) -> None:
        """Compare ``items`` (from ``seq``) with the ``stored`` ones (from ``first``) where
        their positions overlap."""
        lo, hi = max(seq, first), min(seq + len(items), first + len(stored))
        for position in range(lo, hi):
            old, new = stored[position - first], items[position - seq]
            if codec.canonical(old) != codec.pack(new, what="item"):
                raise ConflictError(stream, position, old, new)

    async def seal(self, stream: str, *, epoch: int = 0) -> None:
        """Mark the stream finished at its current head; appends past it are refused.

        Raises:
            FencedError: a writer with a higher epoch has written to the stream.
        """
        if not await self.write_seal(stream, epoch):
            raise FencedError(stream, epoch, (await self.info(stream)).epoch)
        self.notify(stream)

    async def read_batches(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[tuple[int, list[Any]]]:
        """Yield ``(first_seq, items)`` runs of decoded items in ``[start, stop)``, in order.

        Reads what is stored now; it does not wait for more.
        """
        async for first, count, data in self.segments(stream, start, stop):
            first, items = self._decode_slice(stream, first, count, data, start, stop)
            if items:
                yield first, items

    def info_now(self, stream: str) -> StreamInfo | None:
        """:meth:`info`, known before it returns, on a backend that can tell without
        suspending; None otherwise (then await :meth:`info`)."""
        return None

    def segment_now(self, stream: str, start: int, stop: int) -> tuple[int, list[Any]] | None:
        """The first run of :meth:`read_batches` (``stream`` from ``start``, before
        ``stop``), decoded before it returns, on a backend that can read without
        suspending: ``(first_seq, items)`` of the stored segment holding ``start``, cut
        to ``[start, stop)``. None when that cannot be done now or is not the plain case
        (nothing stored there, trimmed, a segment that does not fit the head): the
        caller reads through :meth:`read_batches`, which raises what it finds.

        Raises:
            FormatError: the segment does not match its checksum or its count.
        """
        return None

    async def read(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(seq, item)`` for the items stored in ``[start, stop)``, in seq order."""
        # Not built on read_batches: one async generator per item, not two.
        async for first, count, data in self.segments(stream, start, stop):
            first, items = self._decode_slice(stream, first, count, data, start, stop)
            for seq, item in enumerate(items, first):
                yield seq, item

    async def wait(self, stream: str, seq: int, timeout: float | None = None) -> bool:
        """Return True once ``head(stream) > seq`` or the stream is sealed, or False when
        ``timeout`` seconds of loop time pass first (None: wait forever)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        poll = self._poll_interval_min
        while True:
            info = await self.info(stream)
            if info.head > seq or info.sealed:
                return True
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            delay = poll
            if deadline is not None:
                delay = deadline - now if delay is None else min(delay, deadline - now)
            await self._wait_for_notify(stream, delay)
            if poll is not None:
                poll = min(poll * 2, self._poll_interval_max)

    #: Whether the backend keeps a stream's head apart from its segments (a row or a
    #: field that could disagree with them), so :meth:`segments` checks that no stored
    #: segment runs past it; a backend whose head is where its segments end says False.
    _head_apart = True

    #: Backends shared between processes poll with backoff between these bounds (seconds);
    #: None means every change comes through this process, so no polling is needed.
    _poll_interval_min: float | None = None
    _poll_interval_max: float = 0.1

    def notify(self, stream: str) -> None:
        """Wake this process's :meth:`wait` calls on ``stream`` (after a write through the
        segment layer; :meth:`append` and :meth:`seal` do it themselves)."""
        waiters = self._waiters.pop(stream, None)
        if waiters:
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    def write_waiter(self, stream: str, seq: int) -> asyncio.Future[None] | None:
        """For a reader about to wait for item ``seq`` of ``stream``, on a store that
        every write goes through this process (no polling): a future, done already if
        the item is there or the stream sealed, else resolved by the next
        :meth:`notify` of ``stream`` (which may not bring the item: look again). None:
        this store cannot tell without suspending, or must poll; use :meth:`wait`.

        One future per wait and nothing else (no coroutine, no timer): what a reader
        of small segments does after every one. A caller that stops waiting before it
        is resolved gives it back with :meth:`drop_waiter`."""
        return None

    def drop_waiter(self, stream: str, future: asyncio.Future[None]) -> None:
        """Forget a :meth:`write_waiter` future nobody waits for any more."""
        waiters = self._waiters.get(stream)
        if waiters is not None and future in waiters:
            waiters.remove(future)
            if not waiters:
                del self._waiters[stream]

    async def _wait_for_notify(self, stream: str, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(stream, []).append(future)
        handle = None
        if timeout is not None:
            handle = loop.call_later(timeout, _resolve, future)
        try:
            await future
        finally:
            if handle is not None:
                handle.cancel()
            self.drop_waiter(stream, future)

    # ---------------------------------------------------------------- retention
    # Ephemeral streams (docs/retention.md): the runtime deletes the segments every reader
    # has durably passed. A store records the first seq it still holds before (or
    # atomically with) deleting, so a crash midway leaves a readable stream, and a read
    # below it is told apart from a corrupt log.

    async def first_seq(self, stream: str) -> int:
        """Return the first seq :meth:`trim` kept in ``stream`` (0: nothing trimmed).

        Reads below it raise :class:`~perper.errors.TrimmedError`.
        """
        return 0

    async def trim(self, stream: str, before_seq: int) -> int:
        """Delete the stored segments of ``stream`` that end at or below ``before_seq``
        (whole segments only, oldest first); return the first seq still stored.

        The head, the seal and the idempotency keys stay; what is deleted reads as
        :class:`~perper.errors.TrimmedError` from then on. Trimming below the current
        first seq does nothing.
        """
        raise StoreError(
            f"{self.url or type(self).__name__} cannot trim streams; use a memory://, "
            'sqlite:// or ignite:// store for retention="ephemeral"'
        )

    async def delete_stream(self, stream: str) -> None:
        """Delete ``stream`` entirely (items, seal, epoch, keys); afterwards it reads as a
        stream never written. Its metadata (executions, checkpoints) is the caller's."""
        raise StoreError(f"{self.url or type(self).__name__} cannot delete streams")

    async def check_untrimmed(self, stream: str, position: int) -> None:
        """Raise :class:`~perper.errors.TrimmedError` if ``stream`` no longer holds seq
        ``position`` (a trim deleted it); tools that must copy or replay a stream whole call
        it before they write anything."""
        first = await self.first_seq(stream)
        if position < first:
            raise TrimmedError(stream, position, first, self.url)

    # ------------------------------------------------------------ keyed appends

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        """Return the seq of each of ``keys`` that a keyed append stored in ``stream``.

        Backends that keep ingest keys override this and :meth:`write_keyed_segment`.
        """
        raise StoreError(
            f"{self.url or type(self).__name__} does not keep idempotency keys; send to "
            "this stream without keys, or use a memory://, sqlite:// or ignite:// store"
        )

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        """Return ``(first_seq, keys)`` of each keyed segment of ``stream`` overlapping
        ``[start, stop)``, in seq order; ``keys`` holds one key (or None) per item of the
        segment. Segments written without keys are left out. For copying a stream with
        its keys (:mod:`perper.store.mirror`).

        Raises:
            FormatError: a segment's stored keys are not a list of str/None (corrupt).
        """
        raise StoreError(f"{self.url or type(self).__name__} does not keep idempotency keys")

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        """Like :meth:`write_segment` (epoch 0), and in the same atomic write store each
        non-None ``keys[i]`` as the key of seq ``seq + i`` (``keys`` None: no keys).

        Raises:
            HeadMovedError: the head is not ``seq``, the stream is sealed or fenced.
        """
        raise StoreError(f"{self.url or type(self).__name__} does not keep idempotency keys")

    async def append_keyed(
        self, stream: str, items: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[int]:
        """Append ``items`` at the head of ``stream`` in one segment, skipping every item
        whose key the stream already holds; return each item's seq.

        ``keys`` has one key (or None) per item; ``keys=None`` means no item has one. An
        item whose key is stored (or earlier in ``items``) appends nothing and gets the
        seq of the item stored under that key, whatever that item is. Items without a key
        are always appended. The items and their keys are written atomically, so a crash
        leaves both or neither. Several writers may append to one stream at once: a writer
        that loses the race for the head retries at the new head.

        Raises:
            SealedError: the stream is sealed and at least one item is new.
            FencedError: a lease holder (an execution) writes this stream.
            EncodeError: an item is not encodable (``index`` names it).
        """
        items, keys = check_keys(stream, items, keys)
        given = [] if keys is None else list(dict.fromkeys(k for k in keys if k is not None))
        while True:
            info = await self.info(stream)
            head = info.head
            if keys is None:
                seqs, fresh, fresh_keys = list(range(head, head + len(items))), items, None
            else:
                known = await self.lookup_keys(stream, given) if given else {}
                seqs, fresh, fresh_keys = plan_keyed(head, items, keys, known)
            if not fresh:
                return seqs
            if info.sealed:
                raise SealedError(stream, head, head)
            if info.epoch > 0:
                raise FencedError(stream, 0, info.epoch)
            data = encode_segment(fresh)
            try:
                await self.write_keyed_segment(stream, head, len(fresh), data, fresh_keys)
            except HeadMovedError:
                continue  # another producer appended first: look the keys up again
            self.notify(stream)
            return seqs

    async def write_group(
        self, segments: Sequence[SegmentWrite], metas: Sequence[MetaWrite] = ()
    ) -> bool:
        """Write every segment exactly at its stream's head (sealing it after, if asked),
        then every metadata compare-and-set; return True if all were written, False as
        soon as one is refused (a head moved, a stream sealed or fenced, a version
        differs). Wakes the waiters of the streams written.

        A backend that can makes the group one transaction (nothing written when it
        returns False) and commits the groups of concurrent callers together; this
        default applies the writes one by one, in order, so a refused or failed group may
        have written a prefix: callers make every write idempotent and, on False, finish
        with the idempotent :meth:`append`, :meth:`seal` and :meth:`meta_update`.
        """
        try:
            for segment in segments:
                await self.write_segment(
                    segment.stream, segment.seq, segment.count, segment.data, segment.epoch
                )
                sealed = not segment.seal or await self.write_seal(segment.stream, segment.epoch)
                self.notify(segment.stream)
                if not sealed:
                    return False
        except HeadMovedError:
            return False
        for meta in metas:
            if await self.meta_cas(meta.table, meta.key, meta.value, version=meta.version) is None:
                return False
        return True

    # ---------------------------------------------------------- indexed streams
    # (perper/store/index.py: declarations, rows, checked conditions)

    async def index_of(self, stream: str) -> IndexSpec | None:
        """Return the stream's index declaration, or None if it is not indexed.

        Backends that index streams override this, :meth:`indexes`,
        :meth:`write_index` and :meth:`query_rows`.
        """
        return None

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        """Return the declaration of every indexed stream whose name starts with ``prefix``."""
        return {}

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        """Store ``spec`` as the stream's declaration unless it has one, and index the
        items already stored, atomically; return the declaration stored afterwards
        (another writer's, if it declared first)."""
        raise StoreError(
            f"{self.url or type(self).__name__} does not index streams; use a memory://, "
            "sqlite:// or ignite:// store"
        )

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
        """Return a :data:`QueryRow` per index row below ``stop`` that matches ``where``
        (checked by :func:`perper.store.index.check_where`), ordered by the checked
        ``order_by`` clause, at most ``limit`` of them. The backend primitive behind
        :meth:`query`, which checks each segment's checksum and decodes only the item a
        locator points at."""
        raise StoreError(f"{self.url or type(self).__name__} does not index streams")

    async def declare_index(self, stream: str, index: Any) -> IndexSpec:
        """Declare the stream's indexed fields (``{"user": int, ...}``), durably, and
        index what it holds already; idempotent for the same declaration.

        Raises:
            ConfigError: the declaration is bad, or the stream has another one.
        """
        spec = normalize_index(index, where=f"index of {stream!r}")
        current = await self.index_of(stream)
        if current is None:
            current = await self.write_index(stream, spec)
        if current != spec:
            raise ConfigError(
                f"stream {stream!r} is indexed on ({describe_index(current)}); another writer "
                f"declares ({describe_index(spec)}): declare the same index everywhere the "
                "stream is written, or write another stream"
            )
        return spec

    async def query(
        self,
        stream: str,
        where: str,
        params: Sequence[Any] | None = None,
        *,
        stop: int | None = None,
        order_by: str | None = None,
        limit: int | None = None,
        start: int | None = None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(seq, item)`` of the items below ``stop`` (None: the head) of an indexed
        stream whose index row matches the SQL condition ``where`` (``?`` bound to
        ``params``), ordered by ``order_by`` (``"seq"`` unless given; ``"amount DESC"``),
        at most ``limit`` of them.

        Only stored items answer: a trimmed stream's query sees the items from its first
        stored seq on (trims delete index rows with their segments). ``start`` (what
        ``ctx.query`` recorded) limits the query to the items from ``start`` on, all of
        which must still be stored: if a trim deleted any of them, before or while the
        query runs, it raises ``TrimmedError`` instead of answering with fewer rows
        (docs/retention.md, "What a query of a trimmed stream returns").

        Raises:
            ConfigError: no such stream, the stream is not indexed, or the condition,
                parameters, order or limit are refused (the message names the field and
                the indexed ones).
            TrimmedError: ``start`` is below the first stored seq (checked once the rows
                are selected).
        """
        spec = await self.index_of(stream)
        if spec is None:
            info = await self.info(stream)
            if info.head == 0 and not info.sealed:
                raise ConfigError(
                    f"no stream {stream!r} in {self.url} (never written, or destroyed), so "
                    "it cannot be queried; 'perper streams ls' lists the streams"
                )
            raise ConfigError(
                f"stream {stream!r} in {self.url} is not indexed, so it cannot be queried; "
                'declare its fields: @app.stream(index={"user": int}), ctx.ingest(name, '
                "index=...) or perper.Producer(store, name, index=...)"
            )
        bound = check_params(params, stream=stream)
        check_where(where, bound, spec, stream=stream)
        order = check_order_by(order_by, spec, stream=stream)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise ConfigError(f"query on {stream!r}: limit={limit!r} is a count (an int >= 0)")
        head = (await self.info(stream)).head
        stop = head if stop is None else min(stop, head)
        if limit == 0 or stop <= 0:
            return
        if start:  # the checked condition, bounded below: rows from start on only
            where, bound = f"seq >= ? AND ({where}\n)", (start, *bound)
        found = await self.query_rows(stream, where, bound, stop=stop, order_by=order, limit=limit)
        if start is not None:
            # After the rows (the first stored seq only grows): nothing from start on was
            # trimmed before or while they were selected, so none of them is missing.
            await self.check_untrimmed(stream, start)
        # The segment of the last row: consecutive rows often share one.
        segment: tuple[int, int, bytes] = (-1, 0, b"")  # none yet (-1: no segment's first)
        decoded: list[Any] | None = None
        for seq, locator, fetched in found:
            if fetched is not None and fetched[:2] != segment[:2]:
                first, count, data = fetched
                check_segment(first, count, data, stream=stream, where=self.url)
                segment, decoded = fetched, None
            first, count, data = segment
            if not first <= seq < first + count:
                # The backend primitive, not segments(): one segment, below the head the
                # query began at, so no contiguity to check; its checksum is checked here.
                async for first, count, data in self.scan_segments(stream, seq, seq + 1):
                    if first <= seq < first + count:
                        check_segment(first, count, data, stream=stream, where=self.url)
                        segment, decoded = (first, count, data), None
                        break
                if not first <= seq < first + count:
                    # Trimmed since the rows were selected: gone, not corrupt.
                    await self.check_untrimmed(stream, seq)
                    raise FormatError(
                        f"{self.url}: stream {stream!r} has an index row at seq {seq} but no "
                        "stored item there: the log is corrupt"
                    )
            if locator is not None:
                yield seq, item_at(data, locator, stream=stream, seq=seq, where=self.url)
                continue
            if decoded is None:
                decoded = decode_segment(
                    first, count, data, stream=stream, where=self.url, checked=True
                )
            yield seq, decoded[seq - first]

    async def meta_put(self, table: str, key: str, value: Any) -> int:
        """Write ``value`` whatever the current version; return the new version."""
        entry = await self.meta_update(table, key, lambda _: value)
        assert entry is not None
        return entry.version

    async def meta_update(self, table: str, key: str, fn: Update) -> Meta | None:
        """Read-modify-write one metadata entry with compare-and-set, retrying on races.

        ``fn`` gets the current value (None if absent) and returns the new value, or
        :data:`KEEP` to leave the entry as it is. It may run several times (once per lost
        race), so it must not have side effects.

        Returns the entry as stored afterwards (None: absent and kept).
        """
        while True:
            current = await self.meta_get(table, key)
            value = fn(None if current is None else current.value)
            if value is KEEP:
                return current
            version = await self.meta_cas(
                table, key, value, version=current.version if current else 0
            )
            if version is not None:
                return Meta(version, value)

    def _decode_slice(
        self, stream: str, first: int, count: int, data: bytes, start: int, stop: int | None
    ) -> tuple[int, list[Any]]:
        """Decode a segment that :meth:`segments` handed out (its checksum verified) and cut
        it to ``[start, stop)``; return its first seq and items."""
        items = decode_segment(first, count, data, stream=stream, where=self.url, checked=True)
        if first < start or (stop is not None and first + count > stop):
            lo = max(start - first, 0)
            hi = count if stop is None else min(stop - first, count)
            items = items[lo:hi]
            first += lo
        return first, items

    async def __aenter__(self) -> LogStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class KeyIndex:
    """One process's copy of a stream's idempotency keys: key -> seq, complete for the
    seqs below ``through``.

    The durable keys live in the store, written atomically with the segment that holds
    their items; a store that keeps them per segment absorbs the segments' keys written
    since ``through`` (by any process) before it plans an append, so a lookup is a dict
    lookup and a write adds one small record per segment.
    """

    __slots__ = ("seqs", "through")

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}
        self.through = 0

    def absorb(self, first: int, keys: Sequence[str | None]) -> None:
        """Take in the keys of the segment at ``first`` (None: an item without a key)."""
        seqs = self.seqs
        for offset, key in enumerate(keys):
            if key is not None:
                seqs.setdefault(key, first + offset)

    def absorb_stored(self, first: int, keys: list[str | None], *, where: str) -> None:
        """:meth:`absorb` for keys read back from the store (``where`` names the stream):
        a key stored for two seqs cannot have been written by a keyed append (it stores a
        key once), so it is a corrupt log, not a key to resolve to one of them.

        Raises:
            FormatError: a key of ``keys`` is held for another seq.
        """
        seqs = self.seqs
        for seq, key in enumerate(keys, first):
            if key is not None and seqs.setdefault(key, seq) != seq:
                raise FormatError(
                    f"{where}: the idempotency key {key!r} is stored for seq {seqs[key]} and "
                    f"for seq {seq}: the log is corrupt"
                )

    def absorb_fresh(self, first: int, keys: list[str | None]) -> None:
        """:meth:`absorb` for the keys :func:`plan_keyed` just planned at ``first``: none
        is in the index yet and none repeats, so they go in at C speed."""
        if None in keys:
            self.absorb(first, keys)
        else:
            self.seqs.update(zip(keys, range(first, first + len(keys)), strict=True))  # type: ignore[arg-type]

    def place(self, keys: list[str | None], seqs: list[int]) -> bool:
        """Put ``keys`` in at ``seqs`` (consecutive, from the head the index is complete
        to) *before* they are stored, if every key is a str, none repeats and none is
        known: True, and the caller must :meth:`unplace` them if the write fails. Else
        leave the index as it was and return False (plan with :func:`plan_keyed`).

        The usual case costs one dict probe per key, at C speed: the test for a known key
        and the insertion are one ``setdefault``."""
        seqs_of = self.seqs
        if list(map(seqs_of.setdefault, keys, seqs)) == seqs and None not in seqs_of:  # type: ignore[arg-type]
            return True
        self.unplace(keys, seqs[0] if seqs else 0)
        return False

    def unplace(self, keys: Sequence[str | None], first: int) -> None:
        """Take out what :meth:`place` put in at ``first`` and after (seqs below it were
        stored before)."""
        seqs_of = self.seqs
        for key in keys:
            seq = seqs_of.get(key)  # type: ignore[arg-type]
            if seq is not None and seq >= first:
                del seqs_of[key]  # type: ignore[arg-type]


def checked_keys(found: Any, count: int, *, where: str) -> list[str | None]:
    """The keys of a keyed segment of ``count`` items as read back from a store.

    Raises:
        FormatError: ``found`` is not a list of ``count`` str/None (a corrupt log).
    """
    if type(found) is not list or len(found) != count or not set(map(type, found)) <= _KEY_TYPES:
        raise FormatError(
            f"{where}: the idempotency keys stored with this segment of {count} items are "
            "not one str (or nil) per item: the log is corrupt"
        )
    return found


def stored_keys(packed: bytes, count: int | None, *, where: str) -> list[str | None]:
    """Decode the keys stored with a keyed segment of ``count`` items (:func:`checked_keys`;
    ``count`` None: a segment a trim deleted, whose keys stay, of any length).

    Raises:
        FormatError: they are not msgpack, or not one str/None per item (a corrupt log).
    """
    try:
        found = codec.unpack(packed)
    except FormatError as error:
        raise FormatError(f"{where}: its idempotency keys: {error}") from None
    if count is None and type(found) is list:
        count = len(found)
    return checked_keys(found, -1 if count is None else count, where=where)


def check_keys(
    stream: str, items: Sequence[Any], keys: Sequence[str | None] | None
) -> tuple[list[Any], list[str | None] | None]:
    """Return ``items`` and ``keys`` as lists (``keys`` None if no item has a key),
    refusing a ``keys`` of another length or a key that is not a str."""
    if type(items) is not list:
        items = list(items)
    if keys is None:
        return items, None
    if len(keys) != len(items):
        raise StoreError(
            f"append_keyed to {stream!r}: {len(items)} items but {len(keys)} keys; "
            "pass one key (or None) per item"
        )
    try:
        "".join(keys)  # type: ignore[arg-type]  # at C speed: every key a str (the usual case)
    except TypeError:
        pass
    else:
        return items, list(keys)
    kinds = set(map(type, keys))
    if not kinds <= _KEY_TYPES:
        for key in keys:
            if key is not None and type(key) is not str:
                raise StoreError(
                    f"append_keyed to {stream!r}: key {key!r} is a {type(key).__name__}; "
                    "idempotency keys are str (or None for none)"
                )
    return items, (list(keys) if str in kinds else None)


_KEY_TYPES = {str, type(None)}


def plan_fresh(
    head: int, keys: Sequence[str | None], known: dict[str, int]
) -> dict[str, int] | None:
    """The usual case of :func:`plan_keyed`, at C speed: if every key is a str, none
    repeats and none is in ``known``, each key's seq from ``head`` on (what the index
    takes in once they are stored); else None."""
    placed = dict(zip(keys, range(head, head + len(keys)), strict=True))
    if len(placed) != len(keys) or None in placed:
        return None
    if known and not known.keys().isdisjoint(placed):
        return None
    return placed  # type: ignore[return-value]


def plan_keyed(
    head: int, items: list[Any], keys: Sequence[str | None], known: dict[str, int]
) -> tuple[list[int], list[Any], list[str | None]]:
    """Plan a keyed append at ``head``: ``(seq of every item, new items, their keys)``.

    ``known`` maps the keys already stored to their seqs; a key repeated in ``keys`` is
    appended once, at its first occurrence.
    """
    if plan_fresh(head, keys, known) is not None:
        return list(range(head, head + len(items))), items, list(keys)
    if not known or known.keys().isdisjoint(keys):
        # Every key is new, some are None: fresh unless a str key repeats.
        distinct = set(keys)
        unkeyed = keys.count(None) if None in distinct else 0
        if len(distinct) - (unkeyed > 0) + unkeyed == len(keys):
            return list(range(head, head + len(items))), items, list(keys)
    seqs: list[int] = []
    fresh: list[Any] = []
    fresh_keys: list[str | None] = []
    placed: dict[str, int] = {}
    for item, key in zip(items, keys, strict=True):
        if key is not None:
            seq = known.get(key)
            if seq is None:
                seq = placed.get(key)
            if seq is not None:
                seqs.append(seq)
                continue
            placed[key] = head + len(fresh)
        seqs.append(head + len(fresh))
        fresh.append(item)
        fresh_keys.append(key)
    return seqs, fresh, fresh_keys


#: Each segment's ``data``: a CRC-32 (big-endian, 4 bytes) of the packed items, then them.
_CRC = struct.Struct(">I")

try:
    # ISA-L's CRC-32: the same checksum as zlib.crc32 (the same polynomial, the same
    # values, so the format is unchanged), computed with carry-less multiplication at
    # 20-40 times zlib's speed; every segment written and read is checksummed once.
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # pragma: no cover - a platform without isal wheels
    from zlib import crc32 as _crc32


def encode_segment(items: Sequence[Any]) -> bytes:
    """Encode a run of consecutive items as the ``data`` of one stored segment: a CRC-32 of
    the msgpack array, then the array.

    Raises:
        EncodeError: with ``index`` set to the position of the first bad item.
    """
    packed = codec.pack_segment(items)
    return _CRC.pack(_crc32(packed)) + packed


def check_segment(
    first: int, count: int, data: bytes, *, stream: str = "", where: str = ""
) -> None:
    """Check a stored segment's checksum.

    Raises:
        FormatError: the data does not match its checksum (a corrupt log).
    """
    if type(data) is not bytes or len(data) < _CRC.size:
        raise FormatError(
            f"{_place(where, stream, first, count)}: the segment is truncated: the log is corrupt"
        )
    if _CRC.unpack_from(data)[0] != _crc32(memoryview(data)[_CRC.size :]):
        raise FormatError(
            f"{_place(where, stream, first, count)}: the segment does not match its checksum "
            "(its bytes were changed): the log is corrupt"
        )


def segment_packed(data: bytes) -> bytes:
    """The msgpack array inside a segment's ``data`` (what :func:`perper.codec.canonical`
    of its item list gives), without the checksum; for comparing segments by bytes."""
    return data[_CRC.size :]


def segment_items(data: bytes) -> list[Any]:
    """The items of a segment's ``data``, checksum checked, whatever their count."""
    check_segment(0, 0, data)
    return codec.unpack_segment(data[_CRC.size :])


def decode_segment(
    first: int,
    count: int,
    data: bytes,
    *,
    stream: str = "",
    where: str = "",
    checked: bool = False,
) -> list[Any]:
    """Decode a stored segment's items, checking its checksum and that there are as many
    items as its header says.

    ``stream`` and ``where`` (the store's URL) only make the error name the place.
    ``checked``: the data came from :meth:`LogStore.segments`, which has verified its
    checksum already; skip computing it a second time.

    Raises:
        FormatError: the data is not a segment of ``count`` items (a corrupt log).
    """
    if not checked:
        check_segment(first, count, data, stream=stream, where=where)
    try:
        # A view, not a slice: the array is decoded where it lies, not copied first.
        items = codec.unpack_segment(memoryview(data)[_CRC.size :])
    except FormatError as error:
        raise FormatError(f"{_place(where, stream, first, count)}: {error}") from None
    if len(items) != count:
        raise FormatError(
            f"{_place(where, stream, first, count)}: the segment holds {len(items)} items, "
            f"not the {count} its header says: the log is corrupt"
        )
    return items


def read_segment(
    first: int, count: int, data: bytes, *, stream: str = "", where: str = ""
) -> list[Any]:
    """:func:`check_segment` and :func:`decode_segment` in one call: a reader of small
    segments pays for one call per segment, not four. Anything but a sound segment is
    handed to those two, which raise what they find.

    Raises:
        FormatError: the data does not match its checksum, or is not ``count`` items.
    """
    if type(data) is bytes and len(data) >= _CRC.size:
        view = memoryview(data)[_CRC.size :]
        if _CRC.unpack_from(data)[0] == _crc32(view):
            try:
                items = codec.unpack(view)
            except FormatError:
                pass  # decode_segment says where
            else:
                if type(items) is list and len(items) == count:
                    return items
    check_segment(first, count, data, stream=stream, where=where)
    return decode_segment(first, count, data, stream=stream, where=where, checked=True)


def _place(where: str, stream: str, first: int, count: int) -> str:
    place = f"segment at seq {first}..{first + count - 1}"
    if stream:
        place = f"stream {stream!r}, {place}"
    return f"{where}: {place}" if where else place


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def unpack_meta(data: bytes, *, table: str, key: str, where: str) -> Any:
    """Decode a stored metadata value (``key`` of ``table``, in the store ``where``).

    Raises:
        FormatError: the value is not msgpack, naming the table and the key (a corrupt log).
    """
    try:
        return codec.unpack(data)
    except FormatError as error:
        raise FormatError(f"{where}: the {table} entry {key!r}: {error}") from None


def check_table(table: str) -> None:
    """Refuse metadata tables that are not part of the contract."""
    if table not in META_TABLES:
        raise StoreError(
            f"unknown metadata table {table!r}; the tables are {', '.join(META_TABLES)}"
        )
