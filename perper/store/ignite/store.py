"""IgniteStore: streams and metadata in an Apache Ignite 2.x cluster (docs/ignite.md).

The store class: what this process knows of each stream (:class:`_Stream`), the segment
cache, and the contract's primitives built on :mod:`~perper.store.ignite.connection` (the
requests), :mod:`~perper.store.ignite.layout` (the keys) and
:mod:`~perper.store.ignite.directory` (the listings). The append protocol (the segment
write is the commit), how ends are probed and seqs located, and why the asyncio client
are explained in docs/ignite.md.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import quote

from perper import codec
from perper.errors import ConfigError, FormatError, HeadMovedError, StoreError
from perper.store.base import (
    KEEP,
    KeyIndex,
    LogStore,
    Meta,
    QueryRow,
    StreamInfo,
    Update,
    check_keys,
    check_table,
    checked_keys,
    encode_segment,
    plan_keyed,
)
from perper.store.ignite.connection import Connector
from perper.store.ignite.directory import Directory
from perper.store.ignite.index import IgniteIndexes
from perper.store.ignite.layout import (
    HEADER,
    HINT,
    HINT_EVERY,
    KIND_ITEMS,
    KIND_KEYED,
    KIND_SEAL,
    META_CACHE,
    NAMESPACE_CHARS,
    SEGMENTS_CACHE,
    STREAMS_AREA,
    TRIM,
    VERSION,
    Layout,
    entry_keys,
    keyed_value,
    meta_entry,
    parse_header,
    payload,
)
from perper.store.ignite.url import mask_url, parse_url
from perper.store.index import IndexSpec

__all__ = ["IgniteStore"]

_MAX_WINDOW = 64
#: Keys per get_all when a query fetches the segments of its matches.
_GET_BATCH = 256
_PROBE_CONCURRENCY = 32


@dataclass(slots=True)
class _Stream:
    """What this process knows of one stream. Every fact but ``seal_epoch`` is permanent
    (segments are write-once), so none of it can be wrong, only behind.

    ``n``/``head``/``epoch``: segments ``0..n-1`` exist, hold seqs ``0..head-1`` and the last
    was written with lease ``epoch`` (a lower bound of the end). ``sealed``/``seal_epoch``:
    the seal marker seen at ``n`` by the last probe. ``starts``/``numbers``: sorted seqs at
    which a known segment starts, and its number.

    All of that holds until the stream is deleted (``delete_stream``, by any process). So
    what is remembered is re-checked (:meth:`IgniteStore._probe`) once ``recheck`` seconds
    of loop time have passed since ``checked`` (then ``checked_n``/``checked_head``: the
    end as confirmed); ``unchecked``: the segments this process wrote since, removed
    again if the stream turns out to have been deleted under them. ``hint``: the end hint
    as this process last read or wrote it (hint updates compare-and-set against it).
    """

    n: int = 0
    head: int = 0
    epoch: int = 0
    sealed: bool = False
    seal_epoch: int = 0
    registered: bool = False
    #: The first kept segment of a trimmed stream (ephemeral): its number and first seq.
    floor_n: int = 0
    floor_seq: int = 0
    starts: list[int] = field(default_factory=lambda: [0])
    numbers: list[int] = field(default_factory=lambda: [0])
    hint: bytes | None = None
    checked: float = float("-inf")
    checked_n: int = 0
    checked_head: int = 0
    unchecked: list[int] = field(default_factory=list)

    def reset(self) -> None:
        """Forget everything (the stream was deleted, or is another one by now)."""
        fresh = _Stream()
        for name in (f.name for f in fields(_Stream)):
            setattr(self, name, getattr(fresh, name))

    def learn(self, n: int, first: int, count: int, epoch: int) -> None:
        self._bound(first, n)
        self._bound(first + count, n + 1)
        if n + 1 > self.n:
            self.n, self.head, self.epoch = n + 1, first + count, epoch
        self.registered = True

    def learn_end(self, n: int, head: int, epoch: int) -> None:
        if n > self.n:
            self.n, self.head, self.epoch = n, head, epoch
        self._bound(head, n)
        self.registered = True

    def _bound(self, seq: int, n: int) -> None:
        i = bisect.bisect_left(self.starts, seq)
        if i < len(self.starts) and self.starts[i] == seq:
            return
        self.starts.insert(i, seq)
        self.numbers.insert(i, n)
        if len(self.starts) > 8192:  # keep it small: every other bound, plus the end
            self.starts, self.numbers = self.starts[::2], self.numbers[::2]
            self._bound(self.head, self.n)

    def around(self, seq: int) -> tuple[int, int, int, int]:
        """Known segment starts around ``seq``: ``(lo_seq, lo_n, hi_seq, hi_n)`` with
        ``lo_seq <= seq < hi_seq``; requires ``seq < self.head``."""
        i = bisect.bisect_right(self.starts, seq) - 1
        return self.starts[i], self.numbers[i], self.starts[i + 1], self.numbers[i + 1]

    def estimate_number(self, seq: int) -> int | None:
        """Estimate the number of the first segment starting at or after ``seq`` (exact when
        a segment is known to start there; None past the known end)."""
        i = bisect.bisect_left(self.starts, seq)
        if i == len(self.starts):
            return None
        if self.starts[i] == seq:
            return self.numbers[i]
        lo_seq, lo_n, hi_seq, hi_n = (
            self.starts[i - 1],
            self.numbers[i - 1],
            self.starts[i],
            self.numbers[i],
        )
        return lo_n + -(-(seq - lo_seq) * (hi_n - lo_n) // (hi_seq - lo_seq))


class _SegmentCache:
    """LRU of stored segment entries by key, bounded in bytes. Entries are immutable."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.entries: OrderedDict[str, bytes] = OrderedDict()

    def drop(self, key: str) -> None:
        value = self.entries.pop(key, None)
        if value is not None:
            self.size -= len(value)

    def get(self, key: str) -> bytes | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if self.limit <= 0 or len(value) > self.limit // 4 or key in self.entries:
            return
        self.entries[key] = value
        self.size += len(value)
        while self.size > self.limit:
            _, old = self.entries.popitem(last=False)
            self.size -= len(old)


class IgniteStore(LogStore):
    """A :class:`LogStore` in an Apache Ignite 2.x cluster (see the module docstring).

    Connects lazily, on the first call, within the running event loop.

    Args:
        addresses: ``(host, port)`` of thin-client endpoints; any one of them is enough.
        namespace: prefix of every key (letters, digits, ``.``, ``_``, ``-``).
        username, password: Ignite authentication.
        tls: pyignite SSL arguments (``use_ssl``, ``ssl_ca_certfile``, ...).
        timeout: seconds to wait for one request's answer.
        retry: seconds to keep retrying when the cluster cannot be reached.
        partition_aware: route each key to its primary node (default: iff several addresses).
        cache_mb: MiB of segments kept in memory.
        recheck: seconds of loop time after which what this process remembers of a stream
            is re-checked before it appends on (the stream may have been deleted).
        url: the URL it was opened with (for messages; a password in it is masked).
    """

    _poll_interval_min = 0.002
    _head_apart = False  # a stream's head is where its segments end
    _poll_interval_max = 0.1
    #: Ignite refuses a record above 16 MiB (its WAL record capacity, "Record is too
    #: long"); segments stay well below, and one item must fit with its header.
    max_segment_bytes = 4 * 1024 * 1024
    max_item_bytes = 15 * 1024 * 1024

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        *,
        namespace: str = "default",
        username: str | None = None,
        password: str | None = None,
        tls: dict[str, Any] | None = None,
        timeout: float = 10.0,
        retry: float = 5.0,
        partition_aware: bool | None = None,
        cache_mb: float = 16,
        recheck: float = 1.0,
        url: str | None = None,
    ) -> None:
        super().__init__()
        if not addresses:
            raise ConfigError("IgniteStore needs at least one host:port address")
        if not namespace or not set(namespace) <= NAMESPACE_CHARS or len(namespace) > 200:
            raise ConfigError(
                f"Ignite namespace {namespace!r} is not valid: use letters, digits, '.', '_' "
                "and '-' only (at most 200)"
            )
        self.addresses = [(str(host), int(port)) for host, port in addresses]
        self.namespace = namespace
        where = ",".join(f"{host}:{port}" for host, port in self.addresses)
        self.where = where
        self.url = mask_url(url) if url else f"ignite://{where}?namespace={quote(namespace)}"
        client_args: dict[str, Any] = dict(tls or {})
        if username is not None:
            client_args["username"] = username
        if password is not None:
            client_args["password"] = password
        #: Every request goes through here (one retry loop; see connection.py).
        self.io = Connector(
            self.addresses,
            client_args,
            namespace=namespace,
            timeout=timeout,
            retry=retry,
            # With one address there is one connection: hashing keys to pick it only
            # costs time.
            partition_aware=len(addresses) > 1 if partition_aware is None else partition_aware,
            url=self.url,
        )
        self.layout = Layout(namespace)
        self.directory = Directory(self.io, self.layout)
        self._cache = _SegmentCache(int(cache_mb * 1024 * 1024))
        self.recheck = recheck
        self._streams: dict[str, _Stream] = {}
        self._meta_seen: dict[str, bytes] = {}
        self._hints: set[asyncio.Task[None]] = set()
        self._key_index: dict[str, KeyIndex] = {}
        #: Prefixes whose executions were scanned for unlisted streams, and what they found.
        self._unlisted_scanned: set[str] = set()
        self._unlisted_found: set[str] = set()
        #: Indexed streams: declarations, index rows in Ignite SQL tables (index.py).
        self.indexing = IgniteIndexes(self)

    @classmethod
    def from_url(cls, url: str) -> IgniteStore:
        """Open ``ignite://host:port[,host:port...][?option=value&...]`` (see
        :data:`~perper.store.ignite.url.URL_OPTIONS`).

        Raises:
            ConfigError: the URL is malformed, names an unknown option, or gives
                credentials without ``tls=1`` or an explicit ``tls=0``.
        """
        options = parse_url(url)
        return cls(
            options.addresses,
            namespace=options.namespace,
            username=options.username,
            password=options.password,
            tls=options.tls,
            timeout=options.timeout,
            retry=options.retry,
            partition_aware=options.partition_aware,
            cache_mb=options.cache_mb,
            recheck=options.recheck,
            url=options.url,
        )

    # --------------------------------------------------------------- keys, state

    def _stream(self, stream: str) -> _Stream:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream()
        return state

    async def _register(self, stream: str, state: _Stream) -> None:
        """List the stream in the directory (for ``streams``), then create its hint, before
        its first segment; both writes are idempotent.

        In that order, never at once: a process that finds the hint takes the stream for
        registered (:meth:`info`) and its first append then skips this. Sent together, a
        writer killed between the two left a hint without a listing, and the writer that
        took over wrote the whole stream unlisted: missing from ``streams()`` and so from
        every export (the failover flake, docs/ignite.md "Append protocol").
        """
        if not state.registered:
            await self.directory.index(STREAMS_AREA, stream)
            created = HINT.pack(0, 0, 0)
            if await self.io.put_if_absent(
                SEGMENTS_CACHE, self.layout.hint(stream), created, f"registering {stream!r}"
            ):
                state.hint = created
            state.registered = True
            self._checked(state)

    async def _ensure_listed(self, stream: str, state: _Stream) -> None:
        """Before segment 0 (items or the seal marker): register the stream, or, if its hint
        was found, list it anyway (free once this process has seen it listed), so segment 0
        is never written unlisted, not even over a hint an older perper's writer left
        unlisted when it died."""
        if state.registered:
            await self.directory.index(STREAMS_AREA, stream)
        else:
            await self._register(stream, state)

    # ------------------------------------------------------------------ probing

    @staticmethod
    def _learn_hint(state: _Stream, hint: bytes) -> None:
        """Take in a hint read from the store; the next probe checks it (a hint is only a
        claim that segment ``n - 1`` ends at ``head``)."""
        state.learn_end(*HINT.unpack(hint))
        state.hint = hint
        state.checked, state.checked_n, state.checked_head = float("-inf"), *HINT.unpack(hint)[:2]

    async def _probe_from_hint(self, stream: str, state: _Stream) -> None:
        """Probe a stream just looked up from its hint; a hint the stream's segments
        contradict (stale: written for an earlier stream of that name, and landed after it
        was deleted) is ignored, and the stream probed from segment 0."""
        if not await self._probe(stream, state):
            state.registered = True
            self._checked(state)
            await self._probe(stream, state)

    def _due(self, state: _Stream) -> bool:
        """Whether what this process remembers of a stream is to be re-checked."""
        return asyncio.get_running_loop().time() - state.checked > self.recheck

    def _checked(self, state: _Stream) -> None:
        state.checked = asyncio.get_running_loop().time()
        state.checked_n, state.checked_head = state.n, state.head
        state.unchecked.clear()

    async def _probe(self, stream: str, state: _Stream) -> bool:
        """Advance ``state`` to the stream's current end, seal marker included.

        When due (:meth:`_due`), the first request also re-checks what this process
        remembers, at no extra round trip: the hint must still exist and the last segment
        confirmed before must still be the one seen then (or trimmed). If not, the stream
        was deleted (and perhaps created again) since: the segments this process wrote
        meanwhile are removed, ``state`` is reset and False returned (the caller looks the
        stream up afresh)."""
        # One key more than the window: a segment present after an absent one means the
        # absent one was deleted (segments are written in order), which must not pass for
        # the end of the stream.
        window = 1
        check = state.registered and self._due(state)
        while True:
            base = state.n  # other tasks may advance state.n while we wait for the answer
            keys = [self.layout.segment(stream, base + i) for i in range(window + 1)]
            what = f"reading the end of {stream!r}"
            # The trim record rides along in the same request: another process may have
            # trimmed past what this one knows (then the segments at base are gone).
            trim_key = self.layout.trim(stream)
            extra = []
            if check:
                extra.append(self.layout.hint(stream))
                if state.checked_n:
                    extra.append(self.layout.segment(stream, state.checked_n - 1))
            found = await self.io.get_all(SEGMENTS_CACHE, [*keys, trim_key, *extra], what)
            trim = found.pop(trim_key, None)
            if check:
                check = False
                confirmed = [found.pop(key, None) for key in extra]
                if not await self._still_there(stream, state, trim, *confirmed):
                    return False
            if trim is not None:
                self._learn_floor(state, trim)  # known_floor() is as fresh as this probe
                if self._parse_trim(trim)[0] > base:
                    continue
            for i, key in enumerate(keys[:-1]):  # the last key only looks ahead
                value = found.get(key)
                if value is None:
                    if any(later in found for later in keys[i + 1 :]):
                        value = await self.io.get(SEGMENTS_CACHE, key, what)  # raced a writer?
                        if value is None and await self._refresh_floor(stream, state, base + i + 1):
                            break  # trimmed by another process: probe on from the floor
                        if value is None:
                            raise FormatError(
                                f"{self.url}: segment {base + i} of stream {stream!r} (from "
                                f"seq {state.head}) is missing although later segments "
                                "exist: the log is corrupt"
                            )
                    else:
                        return True
                if self._learn(stream, state, base + i, key, value)[0] == KIND_SEAL:
                    return True
            window = min(window * 4, _MAX_WINDOW)

    async def _still_there(
        self, stream: str, state: _Stream, trim: Any, hint: Any, last: Any = None
    ) -> bool:
        """The re-check of :meth:`_probe`: ``hint`` and ``last`` (segment ``checked_n -
        1``) as stored now, ``trim`` the trim record."""
        n = state.checked_n
        key = self.layout.segment(stream, n - 1)
        if last is None or not n:
            same = not n or (trim is not None and self._parse_trim(trim)[0] >= n)
        else:
            cached = self._cache.get(key)
            if cached is not None:
                same = cached == last
            else:
                kind, first, count, _ = parse_header(key, last)
                same = kind != KIND_SEAL and first + count == state.checked_head
        if hint is not None and same:
            state.hint = hint if type(hint) is bytes else None
            self._checked(state)
            return True
        if hint is None and last is not None:
            # A deletion removes the hint after the segments: this is a lost write.
            raise FormatError(
                f"{self.url}: stream {stream!r} has segment {n - 1} but no end hint, which "
                "its writer stores before segment 0: the cluster lost a write it had "
                "acknowledged (were partitions lost? see the nodes' logs); the namespace is "
                "corrupt"
            )
        # Deleted since it was checked (and perhaps created again): what this process
        # wrote meanwhile has no segment 0 below it.
        orphans = [self.layout.segment(stream, m) for m in state.unchecked]
        for i in range(0, len(orphans), 1024):
            await self.io.remove_keys(SEGMENTS_CACHE, orphans[i : i + 1024], f"deleting {stream!r}")
        self._forget(stream, state)
        return False

    def _forget(self, stream: str, state: _Stream) -> None:
        for m in range(state.n + 1):
            self._cache.drop(self.layout.segment(stream, m))
        state.reset()
        self.directory.forget(STREAMS_AREA, stream)
        self.indexing.forget(stream)
        self._key_index.pop(stream, None)
        if self._compared is not None and self._compared[0] == stream:
            self._compared = None

    def _learn(
        self, stream: str, state: _Stream, n: int, key: str, value: bytes
    ) -> tuple[int, int, int, int]:
        """Take in segment ``n`` as read from the store; return its header."""
        kind, first, count, epoch = header = parse_header(key, value)
        if n == state.n and first != state.head:
            raise FormatError(
                f"{self.url}: segment {n} of stream {stream!r} starts at seq {first} but the "
                f"segments before it end at seq {state.head}: the log is corrupt"
            )
        if kind == KIND_SEAL:
            if n == state.n:
                state.sealed = state.registered = True
                state.seal_epoch = epoch
        else:
            state.learn(n, first, count, epoch)
            self._cache.put(key, value)
        return header

    # --------------------------------------------------------------- primitives

    async def info(self, stream: str) -> StreamInfo:
        self._check_open()
        state = self._stream(stream)
        while not state.registered:
            hint_key, trim_key = self.layout.hint(stream), self.layout.trim(stream)
            what = f"looking up {stream!r}"
            found = await self.io.get_all(SEGMENTS_CACHE, [hint_key, trim_key], what)
            hint = found.get(hint_key)
            # A missing hint means "no such stream" only if there is no segment 0 either
            # (the hint is written first), never "empty" over items. Asked without its
            # value: segment 0 may be a large batch, and a found hint needs no check.
            if hint is None and await self.io.contains(
                SEGMENTS_CACHE, self.layout.segment(stream, 0), what
            ):
                hint = await self.io.get(SEGMENTS_CACHE, hint_key, what)  # raced its writer?
                if hint is None:
                    raise FormatError(
                        f"{self.url}: stream {stream!r} has segment 0 but no end hint, which "
                        "its writer stores before segment 0: the cluster lost a write it had "
                        "acknowledged (were partitions lost? see the nodes' logs); the "
                        "namespace is corrupt"
                    )
            if hint is None:
                return StreamInfo(stream, 0, False)
            self._learn_hint(state, hint)
            if trim_key in found:
                self._learn_floor(state, found[trim_key])
            await self._probe_from_hint(stream, state)
            break
        else:
            if not await self._probe(stream, state):
                return await self.info(stream)  # deleted since: looked up afresh
        if state.sealed:
            return StreamInfo(stream, state.head, True, state.seal_epoch)
        return StreamInfo(stream, state.head, False, state.epoch)

    async def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        async for kind, first, count, _, value in self._scan_entries(stream, start, stop):
            yield first, count, payload(kind, value)

    async def _scan_entries(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, int, str, bytes]]:
        """``(kind, first, count, key, entry)`` of the segments overlapping the range."""
        self._check_open()
        if stop is not None and stop <= start:
            return
        state = self._stream(stream)
        if start < state.floor_seq:
            return  # trimmed: segments() raises TrimmedError
        n = await self._locate(stream, state, start)
        if n is None:
            return
        # Window once past the known end, doubled on each round: small at the end of a
        # stream this process knows (a tailing reader asks for what may just have been
        # written), whole for one it knows nothing of yet (a cold reader of a long stream
        # would otherwise pay a round trip per doubling).
        beyond = 2 if state.registered else _MAX_WINDOW
        while True:
            window = _MAX_WINDOW
            if n < state.n:
                window = min(window, state.n - n)
            else:
                window, beyond = beyond, min(beyond * 2, _MAX_WINDOW)
            if stop is not None:
                past = state.estimate_number(stop)
                if past is not None:
                    window = min(window, max(past - n, 1))
            keys = [self.layout.segment(stream, n + i) for i in range(window)]
            values: dict[str, bytes] = {}
            missing = []
            for key in keys:
                cached = self._cache.get(key)
                if cached is None:
                    missing.append(key)
                else:
                    values[key] = cached
            if missing:
                values.update(await self.io.get_all(SEGMENTS_CACHE, missing, f"reading {stream!r}"))
            for key in keys:
                value = values.get(key)
                if value is None:
                    if n < state.n and not await self._refresh_floor(stream, state, n + 1):
                        # Below the known end a missing segment is lost, not the end.
                        i = bisect.bisect_left(state.numbers, n)
                        known = i < len(state.numbers) and state.numbers[i] == n
                        seq = max(start, state.starts[i]) if known else start
                        raise FormatError(
                            f"{self.url}: stream {stream!r} is missing the items from seq "
                            f"{seq} (segment {n}; its stored segments reach seq {state.head}): "
                            "the log is corrupt"
                        )
                    return  # the end, or trimmed meanwhile (segments() says which)
                kind, first, count, _ = self._learn(stream, state, n, key, value)
                if kind == KIND_SEAL or (stop is not None and first >= stop):
                    return
                if first + count > start:
                    yield kind, first, count, key, value
                n += 1

    async def segments_at(
        self, stream: str, seqs: Sequence[int]
    ) -> dict[int, tuple[int, int, bytes]]:
        """The stored segments holding ``seqs`` (each below the head), as ``{first seq:
        (first, count, data)}``, fetched in ``get_all`` rounds of up to ``_GET_BATCH``
        keys: each round asks for the segment numbers this process's known boundaries
        interpolate (exact for segments of equal size) and learns from what it got, so a
        query's matches usually cost one round trip, not one per segment. A seq whose
        segment a trim deleted is left out (the caller reports it as trimmed)."""
        self._check_open()
        state = self._stream(stream)
        pending = sorted(set(seqs))
        if pending and pending[-1] >= state.head:
            await self.info(stream)
        found: dict[int, tuple[int, int, bytes]] = {}
        what = f"querying {stream!r}"
        while pending:
            wanted = sorted({self._guess(state, seq) for seq in pending})
            for i in range(0, len(wanted), _GET_BATCH):
                numbers = wanted[i : i + _GET_BATCH]
                keys = [self.layout.segment(stream, n) for n in numbers]
                values = {key: self._cache.get(key) for key in keys}
                missing = [key for key, value in values.items() if value is None]
                if missing:
                    values.update(await self.io.get_all(SEGMENTS_CACHE, missing, what))
                for n, key in zip(numbers, keys, strict=True):
                    value = values.get(key)
                    if value is None:
                        if await self._refresh_floor(stream, state, n + 1):
                            continue  # trimmed: the floor is learned, guesses move above it
                        raise FormatError(
                            f"{self.url}: segment {n} of stream {stream!r} is missing below "
                            f"its head {state.head}: the log is corrupt"
                        )
                    kind, first, count, _ = self._learn(stream, state, n, key, value)
                    if kind != KIND_SEAL:
                        found[first] = (first, count, payload(kind, value))
            starts = sorted(found)
            left = []
            for seq in pending:
                at = bisect.bisect_right(starts, seq) - 1
                if at >= 0 and seq < starts[at] + found[starts[at]][1]:
                    continue
                if seq >= state.floor_seq:
                    left.append(seq)
            pending = left
        return found

    @staticmethod
    def _guess(state: _Stream, seq: int) -> int:
        """The number of the segment holding ``seq`` (< head) as the known boundaries
        interpolate it: exact once a boundary at or just around it is known."""
        lo_seq, lo_n, hi_seq, hi_n = state.around(max(seq, state.floor_seq))
        if lo_seq == seq or hi_n - lo_n <= 1:
            return lo_n
        guess = lo_n + (seq - lo_seq) * (hi_n - lo_n) // (hi_seq - lo_seq)
        return min(max(guess, lo_n), hi_n - 1)

    async def _locate(self, stream: str, state: _Stream, start: int) -> int | None:
        """The number of the segment holding ``start``, or None if the stream ends before it.

        (With ``start == 0`` segment 0, which may not exist: the caller then finds nothing.)
        """
        if start == 0 and state.floor_seq == 0:
            return 0
        if start >= state.head:
            await self.info(stream)
            if start >= state.head:
                return None
        while True:
            lo_seq, lo_n, hi_seq, hi_n = state.around(start)
            if lo_seq == start or hi_n - lo_n == 1:
                return lo_n
            # Interpolate (batches are usually of similar size) and bisect (log2 worst case).
            guess = lo_n + (start - lo_seq) * (hi_n - lo_n) // (hi_seq - lo_seq)
            probes = sorted({min(max(guess, lo_n + 1), hi_n - 1), (lo_n + hi_n) // 2})
            keys = [self.layout.segment(stream, n) for n in probes]
            found = await self.io.get_all(
                SEGMENTS_CACHE, keys, f"seeking seq {start} in {stream!r}"
            )
            for n, key in zip(probes, keys, strict=True):
                value = found.get(key)
                if value is None and await self._refresh_floor(stream, state, n + 1):
                    if start < state.floor_seq:
                        return None  # trimmed meanwhile: segments() raises TrimmedError
                    break  # bisect again above the floor
                if value is None:
                    raise FormatError(
                        f"{self.url}: segment {n} of stream {stream!r} (near seq {start}) is "
                        f"missing although segment {hi_n} exists: the log is corrupt"
                    )
                kind, first, count, epoch = parse_header(key, value)
                if kind != KIND_SEAL:
                    state.learn(n, first, count, epoch)
                    self._cache.put(key, value)

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        self._check_open()
        state = self._stream(stream)
        if state.head != seq or state.sealed or self._due(state):
            await self.info(stream)
        if state.sealed or state.head != seq or state.epoch > epoch:
            raise HeadMovedError(stream)
        if not await self._put_segment(stream, state, seq, count, data, epoch):
            raise HeadMovedError(stream)

    async def _put_segment(
        self,
        stream: str,
        state: _Stream,
        seq: int,
        count: int,
        data: bytes,
        epoch: int,
        keys: bytes | None = None,
    ) -> bool:
        """Store segment ``state.n``; False if it exists (someone appended or sealed first).

        The caller has checked that the segments before end at ``seq`` with an epoch not
        above ``epoch``; both are permanent facts, so ``put_if_absent`` makes it atomic.
        """
        n = state.n
        if n == 0:
            await self._ensure_listed(stream, state)
        key = self.layout.segment(stream, n)
        if keys is None:
            value = HEADER.pack(KIND_ITEMS, seq, count, epoch) + data
        else:
            value = keyed_value(seq, count, data, keys)
        rows = self.indexing.rows_for(stream, seq, data) if self.indexing.specs else None
        if n % HINT_EVERY == 0 and n:
            # Segments 0..n-1 are committed, so a hint of that end is true whether or not
            # this put wins. It is only a shortcut for probes: sent beside the append, not
            # waited for, and a lost one costs a later probe a few more keys.
            self._send_hint(stream, state, HINT.pack(n, seq, state.epoch))
        done = await self.io.put_if_absent(SEGMENTS_CACHE, key, value, f"appending to {stream!r}")
        if not done:
            return False
        state.learn(n, seq, count, epoch)
        state.unchecked.append(n)
        if len(state.unchecked) > 4096:
            state.checked = float("-inf")  # re-check at the next append, keep the list short
        self._cache.put(key, value)
        if rows is not None:
            await self.indexing.written(stream, seq, count, rows)
        return True

    def _send_hint(self, stream: str, state: _Stream, hint: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._put_hint_quietly(stream, state, hint))
        self._hints.add(task)
        task.add_done_callback(self._hints.discard)

    async def _put_hint_quietly(self, stream: str, state: _Stream, hint: bytes) -> None:
        with contextlib.suppress(StoreError):
            await self._put_hint(stream, state, hint)

    async def _put_hint(self, stream: str, state: _Stream, hint: bytes) -> None:
        """Move the stream's end hint up to ``hint``: compare-and-set against the hint as
        this process last saw it, never a plain put. A hint update can land after the
        stream was deleted (it is sent in the background): a put would then recreate the
        hint of a stream that is gone, which a new stream of that name, or a look-up,
        would take for its end. The update gives up when the hint is gone (deleted), went
        down (deleted and created again) or is already as far."""
        key, what = self.layout.hint(stream), f"updating the end of {stream!r}"
        old = state.hint
        known = HINT.unpack(old)[0] if old is not None else None
        target = HINT.unpack(hint)[0]
        for _ in range(4):
            if old is None:
                old = await self.io.get(SEGMENTS_CACHE, key, what)
                if type(old) is not bytes or len(old) != HINT.size:
                    return  # deleted (or not perper's): never recreate a hint
                current = HINT.unpack(old)[0]
                if (known is not None and current < known) or current >= target:
                    return
            if await self.io.replace(SEGMENTS_CACHE, key, old, hint, what):
                if state.hint is None or HINT.unpack(state.hint)[0] < target:
                    state.hint = hint
                return
            old = None

    async def append(self, stream: str, seq: int, items: Sequence[Any], *, epoch: int = 0) -> int:
        """See :meth:`LogStore.append`.

        Fast path: when this process knows the stream ends exactly at ``seq`` (it wrote or read
        up to there), the batch goes straight to ``put_if_absent`` of the next segment, skipping
        the contract's ``info`` round trip. That is safe because the known end can only be
        behind, never wrong: if anything was appended or sealed since, the ``put_if_absent``
        finds the key taken and the contract's checked path runs instead.
        """
        self._check_open()
        state = self._streams.get(stream)
        if state is not None and state.n and self._due(state):
            await self.info(stream)  # re-checks what this process remembers (deleted since?)
        if (
            state is not None
            and items
            and state.n
            and state.head == seq
            and not state.sealed
            and state.epoch <= epoch
        ):
            batch = items if type(items) is list else list(items)
            data = encode_segment(batch)
            small = len(data) <= min(self.max_segment_bytes, self.max_item_bytes)
            if small and await self._put_segment(stream, state, seq, len(batch), data, epoch):
                self.notify(stream)
                return seq + len(batch)
            items = batch
        return await super().append(stream, seq, items, epoch=epoch)

    # ------------------------------------------------------------ keyed appends
    # A keyed segment carries its keys in its own entry (layout.keyed_value), so the one
    # put_if_absent that commits the items commits their keys. Lookups use this process's
    # KeyIndex, caught up by reading the keyed entries written since it last looked.

    async def _caught_up(self, stream: str, head: int) -> KeyIndex:
        index = self._key_index.get(stream)
        if index is None:
            index = self._key_index[stream] = KeyIndex()
        if index.through < head:
            async for kind, first, count, key, value in self._scan_entries(
                stream, index.through, head
            ):
                if kind == KIND_KEYED:
                    where = f"Ignite entry {key!r}"
                    keys = checked_keys(entry_keys(key, value), count, where=where)
                    index.absorb_stored(first, keys, where=where)
            index.through = max(index.through, head)
        return index

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        seqs = (await self._caught_up(stream, await self.head(stream))).seqs
        return {key: seqs[key] for key in keys if key in seqs}

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        return [
            (first, checked_keys(entry_keys(key, value), count, where=f"Ignite entry {key!r}"))
            async for kind, first, count, key, value in self._scan_entries(stream, start, stop)
            if kind == KIND_KEYED
        ]

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        self._check_open()
        state = self._stream(stream)
        if state.head != seq or state.sealed or self._due(state):
            await self.info(stream)
        if state.sealed or state.head != seq or state.epoch > 0:
            raise HeadMovedError(stream)
        if not await self._put_keyed(stream, state, seq, count, data, keys):
            raise HeadMovedError(stream)

    async def _put_keyed(
        self,
        stream: str,
        state: _Stream,
        seq: int,
        count: int,
        data: bytes,
        keys: Sequence[str | None] | None,
    ) -> bool:
        packed = None if keys is None else codec.pack(list(keys), what="keys")
        if not await self._put_segment(stream, state, seq, count, data, 0, packed):
            return False
        index = self._key_index.get(stream)
        if index is not None and index.through == seq:
            if keys is not None:
                index.absorb(seq, keys)
            index.through = seq + count
        return True

    async def append_keyed(
        self, stream: str, items: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[int]:
        """See :meth:`LogStore.append_keyed`.

        Fast path, as in :meth:`append`: when this process knows the stream's end and
        holds the keys of every segment before it, the planned segment goes straight to
        ``put_if_absent`` (one round trip); if another producer wrote first, the key is
        taken and the contract's checked path runs instead.
        """
        self._check_open()
        items, keys = check_keys(stream, items, keys)
        state = self._streams.get(stream)
        if state is not None and state.n and self._due(state):
            await self.info(stream)  # re-checks what this process remembers (deleted since?)
        index = self._key_index.get(stream)
        if (
            state is not None
            and items
            and state.n
            and not state.sealed
            and state.epoch == 0
            and (keys is None or (index is not None and index.through == state.head))
        ):
            head = state.head
            if keys is None:
                seqs, fresh, fresh_keys = list(range(head, head + len(items))), items, None
            else:
                assert index is not None
                seqs, fresh, fresh_keys = plan_keyed(head, items, keys, index.seqs)
            if not fresh:
                return seqs  # every key is stored, and stored keys never move
            data = encode_segment(fresh)
            if await self._put_keyed(stream, state, head, len(fresh), data, fresh_keys):
                self.notify(stream)
                return seqs
        return await super().append_keyed(stream, items, keys)

    async def write_seal(self, stream: str, epoch: int) -> bool:
        self._check_open()
        state = self._stream(stream)
        listed = False
        while True:
            await self.info(stream)
            if state.n == 0 and not listed:  # the marker would be segment 0
                await self._ensure_listed(stream, state)
                listed = True
            key = self.layout.segment(stream, state.n)
            if state.sealed:
                # The marker is the one entry that changes: only its epoch, only upwards.
                if state.seal_epoch >= epoch:
                    return state.seal_epoch == epoch
                old = HEADER.pack(KIND_SEAL, state.head, 0, state.seal_epoch)
                new = HEADER.pack(KIND_SEAL, state.head, 0, epoch)
                if await self.io.replace(SEGMENTS_CACHE, key, old, new, f"sealing {stream!r}"):
                    state.seal_epoch = epoch
                    return True
                continue
            if state.epoch > epoch:
                return False
            marker = HEADER.pack(KIND_SEAL, state.head, 0, epoch)
            if await self.io.put_if_absent(SEGMENTS_CACHE, key, marker, f"sealing {stream!r}"):
                state.sealed, state.seal_epoch = True, epoch
                await self._put_hint(stream, state, HINT.pack(state.n, state.head, state.epoch))
                return True

    async def _unlisted(self, prefix: str, listed: list[str]) -> list[str]:
        """Streams an older perper wrote unlisted (its registering writer killed between
        the listing and the hint, docs/ignite.md "Append protocol"), found through their
        execution records: the executions are scanned once per process and prefix (this
        perper lists a stream before its first segment, so none becomes unlisted later),
        the names found are probed on each listing."""
        if not any(prefix.startswith(done) for done in self._unlisted_scanned):
            known = set(listed)
            for key, entry in await self.meta_scan("executions", prefix=prefix):
                value = entry.value
                kind = value.get("kind") if isinstance(value, dict) else None
                if kind in ("stream", "action") and key not in known:
                    self._unlisted_found.add(key)
            self._unlisted_scanned.add(prefix)
        return sorted(
            name for name in self._unlisted_found if name.startswith(prefix) and name not in listed
        )

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        self._check_open()
        names = await self.directory.listed(STREAMS_AREA, prefix, "listing streams")
        unlisted = []
        for name in await self._unlisted(prefix, names):
            if (await self.info(name)).head or self._stream(name).sealed:
                unlisted.append(name)
        for i in range(0, len(names), 256):
            chunk = [name for name in names[i : i + 256] if not self._stream(name).registered]
            keys = [self.layout.hint(name) for name in chunk]
            hints = await self.io.get_all(SEGMENTS_CACHE, keys, "listing streams") if keys else {}
            for name, key in zip(chunk, keys, strict=True):
                hint = hints.get(key)
                if type(hint) is bytes and len(hint) == HINT.size:
                    self._learn_hint(self._streams[name], hint)
        limit = asyncio.Semaphore(_PROBE_CONCURRENCY)

        async def probe(name: str) -> None:
            async with limit:
                state = self._streams[name]
                if state.hint is not None and state.checked == float("-inf"):
                    await self._probe_from_hint(name, state)
                elif not await self._probe(name, state):
                    await self.info(name)

        await asyncio.gather(*(probe(name) for name in names))
        infos = []
        for name in names:
            state = self._streams[name]
            epoch = state.seal_epoch if state.sealed else state.epoch
            infos.append(StreamInfo(name, state.head, state.sealed, epoch))
        if unlisted:
            infos += [await self.info(name) for name in unlisted]
            infos.sort(key=lambda info: info.name)
        return infos

    async def meta_get(self, table: str, key: str) -> Meta | None:
        self._check_open()
        check_table(table)
        full = self.layout.meta(table, key)
        raw = await self.io.get(META_CACHE, full, f"reading {table} {key!r}")
        if raw is None:
            return None
        self._remember(full, raw)
        return meta_entry(full, raw)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        self._check_open()
        check_table(table)
        if version < 0:
            return None
        full = self.layout.meta(table, key)
        new = VERSION.pack(version + 1) + codec.pack(value, what="metadata")
        what = f"writing {table} {key!r}"
        if version == 0:
            await self.directory.index(table, key)
            if await self.io.put_if_absent(META_CACHE, full, new, what):
                self._remember(full, new)
                return 1
            return None
        old = self._meta_seen.get(full)
        for _ in range(2):  # once with what this process saw last, once with a fresh read
            if old is None or VERSION.unpack_from(old)[0] != version:
                old = await self.io.get(META_CACHE, full, what)
                if old is None or VERSION.unpack_from(old)[0] != version:
                    return None
            if await self.io.replace(META_CACHE, full, old, new, what):
                self._remember(full, new)
                return version + 1
            old = None
        return None

    async def meta_update(self, table: str, key: str, fn: Update) -> Meta | None:
        """See :meth:`LogStore.meta_update`.

        Fast path: when this process holds the entry as it last read or wrote it (a
        checkpoint it wrote itself, say), ``fn`` runs on that and the compare-and-set goes
        out at once, without reading the entry first: one round trip instead of two. The
        compare is against the whole stored bytes, version included (versions only grow and
        entries are never deleted), so it succeeds only if that copy was still current;
        otherwise, and whenever ``fn`` keeps the entry or fails on the copy, the contract's
        read-then-write loop decides.
        """
        self._check_open()
        check_table(table)
        full = self.layout.meta(table, key)
        seen = self._meta_seen.get(full)
        if seen is not None:
            current = meta_entry(full, seen)
            try:
                value = fn(current.value)
            except Exception:  # decided on a fresh read below (it may not fail there)
                value = KEEP
            if value is not KEEP:
                # meta_cas compares with this very copy first (see there)
                version = await self.meta_cas(table, key, value, version=current.version)
                if version is not None:
                    return Meta(version, value)
        return await super().meta_update(table, key, fn)

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        self._check_open()
        check_table(table)
        what = f"scanning {table}"
        names = await self.directory.listed(table, prefix, what)
        result = []
        for i in range(0, len(names), 256):
            chunk = names[i : i + 256]
            keys = [self.layout.meta(table, name) for name in chunk]
            found = await self.io.get_all(META_CACHE, keys, what)
            for name, full in zip(chunk, keys, strict=True):
                raw = found.get(full)
                if raw is not None:  # listed, but its writer died before writing it
                    self._remember(full, raw)
                    result.append((name, meta_entry(full, raw)))
        return result

    # ---------------------------------------------------------- indexed streams

    async def index_of(self, stream: str) -> IndexSpec | None:
        self._check_open()
        return await self.indexing.index_of(stream)

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        self._check_open()
        return await self.indexing.indexes(prefix)

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        self._check_open()
        return await self.indexing.write_index(stream, spec)

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
        return await self.indexing.query_rows(
            stream, where, params, stop=stop, order_by=order_by, limit=limit
        )

    async def close(self) -> None:
        if self._closed:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # Let hints in flight land (they save the next reader probes).
        hints = {task for task in self._hints if task.get_loop() is running and not task.done()}
        if hints:
            await asyncio.wait(hints, timeout=self.io.timeout)
        self._closed = True
        await self.io.close()

    # ---------------------------------------------------------------- retention
    # The trim record {ns}|t|{stream} (layout.TRIM) names the first kept segment. A trim
    # writes it first (compare-and-set, only upwards), then deletes the segments below:
    # a crash in between leaves segments nobody reads (below the floor), never a gap.

    def _parse_trim(self, raw: Any) -> tuple[int, int, int]:
        if type(raw) is not bytes or len(raw) != TRIM.size:
            raise FormatError(
                f"{self.url}: a trim record is not perper's: the namespace is corrupt"
            )
        n, seq, epoch = TRIM.unpack(raw)
        return n, seq, epoch

    def _learn_floor(self, state: _Stream, raw: Any) -> None:
        n, seq, epoch = self._parse_trim(raw)
        if seq > state.floor_seq:
            state.floor_n, state.floor_seq = n, seq
            state.learn_end(n, seq, epoch)

    async def _refresh_floor(self, stream: str, state: _Stream, above: int = 0) -> bool:
        """Re-read the stream's trim record; True if its floor is now above segment
        ``above - 1`` (so a missing segment below ``above`` was trimmed, not lost)."""
        raw = await self.io.get(SEGMENTS_CACHE, self.layout.trim(stream), f"reading {stream!r}")
        if raw is not None:
            self._learn_floor(state, raw)
        return raw is not None and state.floor_n >= above

    def known_floor(self, stream: str) -> int:
        """The first stored seq of ``stream`` as this process last learned it (every
        ``info`` reads the trim record with its end probe): a lower bound, no round trip."""
        return self._stream(stream).floor_seq

    async def first_seq(self, stream: str) -> int:
        self._check_open()
        state = self._stream(stream)
        await self._refresh_floor(stream, state)
        return state.floor_seq

    async def trim(self, stream: str, before_seq: int) -> int:
        self._check_open()
        state = self._stream(stream)
        await self.info(stream)
        await self._refresh_floor(stream, state)
        floor_n, floor_seq = state.floor_n, state.floor_seq
        if before_seq <= floor_seq:
            return floor_seq
        keys: list[str] = []
        end, epoch = floor_seq, 0
        async for kind, first, count, key, value in self._scan_entries(stream, floor_seq, None):
            if kind == KIND_SEAL or first + count > before_seq:
                break
            keys.append(key)
            end, epoch = first + count, parse_header(key, value)[3]
        if not keys:
            return floor_seq
        record = TRIM.pack(floor_n + len(keys), end, epoch)
        trim_key = self.layout.trim(stream)
        what = f"trimming {stream!r}"
        while True:
            raw = await self.io.get(SEGMENTS_CACHE, trim_key, what)
            if raw is not None and self._parse_trim(raw)[1] >= end:
                break  # another trim went as far already
            if raw is None:
                done = await self.io.put_if_absent(SEGMENTS_CACHE, trim_key, record, what)
            else:
                done = await self.io.replace(SEGMENTS_CACHE, trim_key, raw, record, what)
            if done:
                break
        for i in range(0, len(keys), 1024):
            await self.io.remove_keys(SEGMENTS_CACHE, keys[i : i + 1024], what)
        for key in keys:
            self._cache.drop(key)
        await self._refresh_floor(stream, state)
        # Last, the index rows below the floor: until they are gone queries skip them
        # (index.py), and a crash before this leaves them for the next trim.
        await self.indexing.trimmed(stream, state.floor_seq)
        return state.floor_seq

    async def delete_stream(self, stream: str) -> None:
        self._check_open()
        state = self._stream(stream)
        info = await self.info(stream)
        what = f"deleting {stream!r}"
        # The index first (index.py): a crash midway leaves a stream that is still whole,
        # whose next query re-indexes it, or one that is no longer indexed.
        await self.indexing.deleted(stream)
        await self.directory.unindex(STREAMS_AREA, stream)
        keys = [self.layout.segment(stream, n) for n in range(state.n + (1 if info.sealed else 0))]
        for i in range(0, len(keys), 1024):
            await self.io.remove_keys(SEGMENTS_CACHE, keys[i : i + 1024], what)
        await self.io.remove_keys(
            SEGMENTS_CACHE, [self.layout.hint(stream), self.layout.trim(stream)], what
        )
        for key in keys:
            self._cache.drop(key)
        self._streams.pop(stream, None)
        self._key_index.pop(stream, None)
        if self._compared is not None and self._compared[0] == stream:
            self._compared = None
        self.notify(stream)

    # ------------------------------------------------------------------ helpers

    def _remember(self, full: str, raw: bytes) -> None:
        if len(self._meta_seen) >= 4096:
            self._meta_seen.clear()
        self._meta_seen[full] = raw
