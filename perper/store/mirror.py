"""Copy one store into another, and keep copying: ``perper export`` and ``perper mirror``.

Segments are copied as stored, without decoding their items: each source segment is read
with :meth:`~perper.store.base.LogStore.segments` and written with
:meth:`~perper.store.base.LogStore.write_segment` at the same seq (the public segment layer), so a
copy costs one read and one write per batch, whatever the items are. Only when the
destination already holds part of a source segment (its head falls inside it, because the
source was written in other batches, or an earlier copy was interrupted inside a segment
boundary of another store) is that one segment decoded and its tail appended.

Ingest segments are copied **with their idempotency keys** (read with
:meth:`~perper.store.base.LogStore.segment_keys`, written with
:meth:`~perper.store.base.LogStore.write_keyed_segment` in the same atomic write as the
items), so an exported or mirrored ingest stream still dedups: a
:class:`perper.Producer` sending a key the copy holds gets the stored seq back.

A copy is idempotent and resumable: for every selected stream it starts at the destination's
head, so running it again after an interruption copies only what is missing, and a finished
copy run again copies nothing. Sealed flags, lease epochs and index declarations (the
destination indexes what it is given) are carried over. Metadata
entries (runs, executions, checkpoints, leases) are copied by value; the destination numbers
its own versions (a version is a compare-and-set token of the store that holds it).

Selection: ``run`` keeps the streams and metadata of one run and of the agent instances
it started (stream names and the keys of executions, checkpoints and leases start with
``{run}/`` or ``{run}.``; the runs entries are ``{run}`` and its instances ``{run}.{app}-{i}``),
plus the run's **inputs from outside it** (:func:`run_inputs`): the streams of other runs,
or written by producers outside any run, that a :class:`~perper.StreamRef` in the
parameters of the run or of its executions names (``perper run --param
source=shop/clicks``), that its executions' checkpoints name (read positions, refs in
``ctx.state``), or that a StreamRef in an item of a copied stream names (found while the
segments are copied, :meth:`_Mirror.scan`; only segments holding a StreamRef's header are
decoded). Their items, idempotency keys, seal and index declaration are
copied, not their writers' metadata: the run read them, so a replay or a simulation of it
needs them. ``streams`` is an :mod:`fnmatch` glob over stream names. An internal stream
``{execution}#effects`` belongs to its execution: it is selected whenever its execution is.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perper import codec
from perper.errors import FormatError, HeadMovedError, StoreError
from perper.store.base import (
    KEEP,
    META_TABLES,
    LogStore,
    StreamInfo,
    decode_segment,
    encode_segment,
)
from perper.store.index import IndexSpec
from perper.streamref import StreamRef

__all__ = [
    "CopyStats",
    "Progress",
    "checkpoint_refs",
    "copy_store",
    "follow",
    "in_run",
    "run_inputs",
    "segment_refs",
    "selected_streams",
]

#: ``progress(copied, total)``: items copied so far and the items this pass has to copy.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class CopyStats:
    """What one copy (or a whole follow) did.

    Attributes:
        streams: selected streams in the source.
        items: items copied.
        segments: segments written to the destination (raw or re-appended tails).
        sealed: streams sealed in the destination.
        metadata: metadata entries written to the destination.
        passes: copy passes run (1 for :func:`copy_store`).
    """

    streams: int = 0
    items: int = 0
    segments: int = 0
    sealed: int = 0
    metadata: int = 0
    passes: int = 1

    def __add__(self, other: CopyStats) -> CopyStats:
        return CopyStats(
            max(self.streams, other.streams),
            self.items + other.items,
            self.segments + other.segments,
            self.sealed + other.sealed,
            self.metadata + other.metadata,
            self.passes + other.passes,
        )

    def __str__(self) -> str:
        return (
            f"{self.items} items in {self.segments} segments of {self.streams} streams, "
            f"{self.sealed} seals, {self.metadata} metadata entries"
        )


def owner(stream: str) -> str:
    """The execution stream an internal stream (``{execution}#effects``) belongs to."""
    return stream.partition("#")[0]


def in_run(name: str, run: str) -> bool:
    """``name`` (a stream, or the key of an execution, checkpoint or lease) belongs to
    ``run`` or to an agent instance it started (``{run}.{app}-{i}/...``)."""
    return name.startswith((run + "/", run + "."))


def _stream_refs(value: Any, found: set[str]) -> None:
    if isinstance(value, StreamRef):
        found.add(value.stream)
    elif isinstance(value, dict):
        for item in value.values():
            _stream_refs(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _stream_refs(item, found)


# A StreamRef is msgpack ext type 2 (codec._EXT_STREAMREF): fixext 1/2/4/8/16 (0xd4-0xd8,
# then the type), or ext 8/16/32 (0xc7-0xc9, a 1/2/4-byte length, then the type). A segment
# whose bytes hold none of these headers holds no StreamRef, not even inside a registered
# dataclass (ext type 1 nests its packed fields verbatim), so only segments that do are
# decoded; a match may be a false one (an int 0xd4 followed by a 2), which only costs the
# decoding. The bytes are first translated so that only the header bytes are not 0 (one
# C pass), then each header is searched for by a pattern that starts with a literal byte
# (which the regex engine scans for quickly): 2.7 ns a byte, where one pattern with the
# four alternatives on the raw bytes took 25 ns and decoding the segment 17 ns.
_HEADER_BYTES = bytearray(256)
_HEADER_BYTES[2] = 2
_HEADER_BYTES[0xC7], _HEADER_BYTES[0xC8], _HEADER_BYTES[0xC9] = 1, 3, 4
for _lead in range(0xD4, 0xD9):
    _HEADER_BYTES[_lead] = 5
_HEADERS = bytes(_HEADER_BYTES)
_REF_HEADERS = tuple(
    re.compile(pattern, re.DOTALL)
    for pattern in (rb"\x05\x02", rb"\x01.\x02", rb"\x03..\x02", rb"\x04....\x02")
)


def _may_hold_ref(data: bytes) -> bool:
    if b"\x02" not in data:
        return False
    marked = data.translate(_HEADERS)
    return any(pattern.search(marked) is not None for pattern in _REF_HEADERS)


def segment_refs(first: int, count: int, data: bytes, *, stream: str = "") -> set[str]:
    """The names of the streams a :class:`~perper.StreamRef` in a stored segment's items
    names (``data`` as :meth:`~perper.store.base.LogStore.segments` yields it). Decodes
    the segment only if its bytes hold the header of a StreamRef."""
    found: set[str] = set()
    if _may_hold_ref(data):
        _stream_refs(decode_segment(first, count, data, stream=stream, checked=True), found)
    return found


def checkpoint_refs(value: Any) -> set[str]:
    """The streams a checkpoint names: those its execution reads (its read positions)
    and those a :class:`~perper.StreamRef` in it names (in ``ctx.state``, say)."""
    found: set[str] = set()
    if isinstance(value, dict):
        _stream_refs(value, found)
        for slot in value.get("positions") or ():
            if isinstance(slot, list) and slot and isinstance(slot[0], str) and slot[0]:
                found.add(slot[0])
    return found


async def run_inputs(store: LogStore, run: str, *, scan_items: bool = True) -> list[str]:
    """The streams outside ``run`` (and its agent instances) that it reads, sorted: those a
    :class:`~perper.StreamRef` names in its launcher parameters or in the parameters of
    its executions (``perper run --param source=shop/clicks``), those its executions'
    checkpoints name (their read positions, and StreamRefs in ``ctx.state``), and, with
    ``scan_items``, those a StreamRef names in an item of one of the run's streams or of
    an input found so far (a stream of refs; a call's result in ``#effects``). Streams of
    the run itself (its ingest streams included) are not listed.

    ``scan_items`` reads every segment of those streams (decoding only those whose bytes
    hold a StreamRef, :func:`segment_refs`); ``copy_store`` does that scan while it copies
    instead, and calls this without it."""
    found: set[str] = set()
    for table in ("runs", "executions", "checkpoints"):
        for key, entry in await store.meta_scan(table, prefix=run):
            mine = key == run or key.startswith(run + ".") if table == "runs" else in_run(key, run)
            if not mine:
                continue
            if table == "checkpoints":
                found |= checkpoint_refs(entry.value)
                continue
            params = entry.value.get("params") if isinstance(entry.value, dict) else None
            if isinstance(params, bytes):
                _stream_refs(codec.unpack(params), found)
    if scan_items:
        todo = [info.name for info in await store.streams(prefix=run) if in_run(info.name, run)]
        todo += sorted(name for name in found if not in_run(name, run))
        scanned: set[str] = set()
        while todo:
            name = todo.pop()
            if name in scanned:
                continue
            scanned.add(name)
            async for first, count, data in store.segments(name, await store.first_seq(name)):
                for ref in segment_refs(first, count, data, stream=name) - found:
                    found.add(ref)
                    if not in_run(ref, run):
                        todo.append(ref)
    return sorted(name for name in found if not in_run(name, run))


@dataclass
class _Selection:
    run: str | None
    glob: str | None
    #: The run's inputs from outside it (run_inputs), found at the start of each pass.
    inputs: frozenset[str] = frozenset()

    @property
    def prefix(self) -> str:
        """What every selected name of the run starts with (its inputs aside)."""
        return self.run or ""

    def stream(self, name: str) -> bool:
        if self.run and not (in_run(name, self.run) or name in self.inputs):
            return False
        if self.glob is None:
            return True
        return fnmatch.fnmatchcase(owner(name), self.glob) or fnmatch.fnmatchcase(name, self.glob)

    def meta(self, table: str, key: str) -> bool:
        if table == "runs":
            if self.run:
                return key == self.run or key.startswith(self.run + ".")
            return True
        if self.run and not in_run(key, self.run):
            return False
        return self.glob is None or fnmatch.fnmatchcase(owner(key), self.glob)

    async def find_inputs(self, store: LogStore) -> None:
        if self.run:
            # Refs in items are found while copying (_Mirror.scan), not by a second read.
            self.inputs |= frozenset(await run_inputs(store, self.run, scan_items=False))

    async def streams(self, store: LogStore) -> list[StreamInfo]:
        """The selected streams of ``store``, sorted by name."""
        infos = [i for i in await store.streams(prefix=self.prefix) if self.stream(i.name)]
        for name in sorted(self.inputs):
            if self.stream(name) and not name.startswith(self.prefix):
                info = await store.info(name)
                if info.head or info.sealed:  # a stream never written is not in the store
                    infos.append(info)
        return sorted(infos, key=lambda info: info.name)


@dataclass
class _Mirror:
    """State kept across the passes of :func:`follow`: what the destination is known to hold."""

    src: LogStore
    dest: LogStore
    selection: _Selection
    skip_trimmed: bool = False
    heads: dict[str, int] = field(default_factory=dict)
    sealed: set[str] = field(default_factory=set)
    indexed: set[str] = field(default_factory=set)
    meta: dict[tuple[str, str], Any] = field(default_factory=dict)
    #: The selected streams found unlisted by the first pass (see :meth:`_unlisted`).
    unlisted: list[str] | None = None
    #: Streams outside the run that a StreamRef in a copied item names (:meth:`scan`).
    refs: set[str] = field(default_factory=set)
    #: Streams whose copy in the destination was scanned for refs (:meth:`_scan_copied`).
    scanned: set[str] = field(default_factory=set)

    async def copy(self, progress: Progress | None) -> CopyStats:
        await self.selection.find_inputs(self.src)
        infos = await self.selection.streams(self.src)
        unlisted = await self._unlisted({info.name for info in infos})
        if unlisted:
            infos = sorted(infos + unlisted, key=lambda info: info.name)
        names = {info.name for info in infos}
        copied = segments = sealed = 0
        declared: dict[str, IndexSpec] | None = None
        while infos:
            todo = await self._plan(infos)
            # Index declarations first, so the copied segments get their index rows.
            if declared is None:
                declared = await self.src.indexes(prefix=self.selection.prefix)
            for info, _ in todo:
                spec = declared.get(info.name)
                if spec is None and info.name in self.selection.inputs:
                    spec = await self.src.index_of(info.name)
                if spec is not None and info.name not in self.indexed:
                    await self.dest.declare_index(info.name, spec)
                    self.indexed.add(info.name)
            total = copied + sum(info.head - head for info, head in todo)
            if progress:
                progress(copied, total)
            for info, head in todo:
                await self._scan_copied(info.name, head)
                if head < info.head:
                    added, written = await self._copy_stream(info, head, copied, total, progress)
                    copied += added
                    segments += written
                if info.sealed and info.name not in self.sealed:
                    if not (await self.dest.info(info.name)).sealed:
                        await self.dest.seal(info.name, epoch=info.epoch)
                        sealed += 1
                    self.sealed.add(info.name)
            # Streams outside the run that a StreamRef in a copied item names: inputs
            # too (the run may have read them), copied in another round.
            infos = await self._new_inputs(names)
            names |= {info.name for info in infos}
        metadata = await self._copy_metadata()
        if progress:
            progress(copied, copied)
        return CopyStats(len(names), copied, segments, sealed, metadata)

    async def _plan(self, infos: list[StreamInfo]) -> list[tuple[StreamInfo, int]]:
        """``(info, destination head)`` of each stream to copy, refusing before anything
        is written when the destination is not a copy or the source was trimmed."""
        todo: list[tuple[StreamInfo, int]] = []
        for info in infos:
            head = self.heads.get(info.name)
            if head is None or head > info.head:
                head = self.heads[info.name] = await self.dest.head(info.name)
            if head > info.head:
                raise StoreError(
                    f"stream {info.name!r} holds {head} items in {self.dest.url} but only "
                    f"{info.head} in {self.src.url}: the destination is not a copy of this "
                    "source; export into a new file"
                )
            if head < info.head:
                # An ephemeral stream trimmed below what the copy needs: refuse before
                # writing anything rather than make a copy with items missing.
                if self.skip_trimmed and await self.src.first_seq(info.name) > head:
                    continue
                await self.src.check_untrimmed(info.name, head)
            todo.append((info, head))
        return todo

    def scan(self, stream: str, first: int, count: int, data: bytes) -> None:
        """Note the streams outside the run that a StreamRef in this segment names."""
        run = self.selection.run
        if run:
            for ref in segment_refs(first, count, data, stream=stream):
                if not in_run(ref, run):
                    self.refs.add(ref)

    async def _scan_copied(self, stream: str, head: int) -> None:
        """Scan what an earlier, interrupted or finished copy put in the destination (its
        segments are not read from the source again), once per copy or follow."""
        if self.selection.run and stream not in self.scanned and head:
            start = await self.dest.first_seq(stream)
            async for first, count, data in self.dest.segments(stream, start, head):
                self.scan(stream, first, count, data)
        self.scanned.add(stream)

    async def _new_inputs(self, names: set[str]) -> list[StreamInfo]:
        fresh = sorted(self.refs - names - self.selection.inputs)
        if not fresh:
            return []
        self.selection.inputs |= frozenset(fresh)
        infos = []
        for name in fresh:
            if self.selection.stream(name):
                info = await self.src.info(name)
                if info.head or info.sealed:  # a stream never written is not in the store
                    infos.append(info)
        return infos

    async def _unlisted(self, listed: set[str]) -> list[StreamInfo]:
        """Selected streams that hold items but that the source's listing lacks, found
        through their executions: an Ignite store before the fix of the failover flake
        could leave a stream written but unlisted (its registering writer killed between
        the listing and the end hint), and a copy must not skip it as if it did not exist.

        The executions are scanned in the first pass only: this perper lists a stream
        before its first segment, so no stream becomes unlisted while a mirror follows;
        later passes only refresh the ones found."""
        if self.unlisted is None:
            self.unlisted = []
            for key, entry in await self.src.meta_scan("executions", prefix=self.selection.prefix):
                value = entry.value
                if (
                    key not in listed
                    and isinstance(value, dict)
                    and value.get("kind") in ("stream", "action")
                    and self.selection.stream(key)
                ):
                    self.unlisted.append(key)
        found = []
        for name in self.unlisted:
            if name not in listed:
                info = await self.src.info(name)
                if info.head or info.sealed:
                    found.append(info)
        return found

    async def _copy_stream(
        self, info: StreamInfo, head: int, done: int, total: int, progress: Progress | None
    ) -> tuple[int, int]:
        name, epoch, stop = info.name, info.epoch, info.head
        position = head
        written = 0
        # Ingest segments carry their producers' idempotency keys: copied with them, so a
        # send to the copy of a key it holds returns the stored seq instead of appending.
        keyed = dict(await self.src.segment_keys(name, position, stop))
        async for first, count, data in self.src.segments(name, position, stop):
            if first + count <= position:
                continue
            keys = keyed.get(first)
            if keys is not None and len(keys) != count:
                raise FormatError(
                    f"{self.src.url}: stream {name!r}, segment at seq {first}: {len(keys)} "
                    f"idempotency keys for {count} items: the log is corrupt"
                )
            self.scan(name, first, count, data)
            if first == position:
                try:
                    if keys is None:
                        await self.dest.write_segment(name, first, count, data, epoch)
                    else:
                        await self.dest.write_keyed_segment(name, first, count, data, keys)
                except HeadMovedError:
                    # Someone else writes this destination stream too: fall back to the
                    # checked append, which compares what is already there (without the
                    # keys: a copy raced by another writer is not a faithful copy anyway).
                    await self.dest.append(
                        name, first, self._decode(name, first, count, data), epoch=epoch
                    )
                self.dest.notify(name)
                position = first + count
            else:  # the destination's head falls inside this segment: append its tail
                items = self._decode(name, first, count, data)[position - first :]
                if keys is None:
                    position = await self.dest.append(name, position, items, epoch=epoch)
                else:
                    tail = keys[position - first :]
                    await self.dest.write_keyed_segment(
                        name, position, len(items), encode_segment(items), tail
                    )
                    self.dest.notify(name)
                    position += len(items)
            written += 1
            self.heads[name] = position
            if progress:
                progress(done + position - head, max(total, done + position - head))
        return position - head, written

    def _decode(self, name: str, first: int, count: int, data: bytes) -> list[Any]:
        # From self.src.segments(), which verified the checksum.
        return decode_segment(first, count, data, stream=name, where=self.src.url, checked=True)

    async def _copy_metadata(self) -> int:
        written = 0
        for table in META_TABLES:
            prefix = self.selection.prefix if table != "runs" else (self.selection.run or "")
            for key, entry in await self.src.meta_scan(table, prefix=prefix):
                if not self.selection.meta(table, key):
                    continue
                remembered = (table, key)
                encoded = codec.canonical(entry.value)
                if self.meta.get(remembered) == encoded:
                    continue
                changed = False

                def update(current: Any, value: Any = entry.value, encoded: bytes = encoded) -> Any:
                    nonlocal changed
                    changed = current is None or codec.canonical(current) != encoded
                    return value if changed else KEEP

                await self.dest.meta_update(table, key, update)
                written += changed
                self.meta[remembered] = encoded
        return written


async def selected_streams(
    store: LogStore, *, run: str | None = None, streams: str | None = None
) -> list[StreamInfo]:
    """The streams of ``store`` that :func:`copy_store` copies with the same selection."""
    selection = _Selection(run, streams)
    if run:  # with the refs in items, which copy_store finds as it copies
        selection.inputs = frozenset(await run_inputs(store, run))
    return await selection.streams(store)


async def copy_store(
    src: LogStore,
    dest: LogStore,
    *,
    run: str | None = None,
    streams: str | None = None,
    progress: Progress | None = None,
    skip_trimmed: bool = False,
) -> CopyStats:
    """Copy the selected streams and metadata of ``src`` into ``dest``; return what it did.

    Resumable and idempotent: each stream continues from the destination's head.

    Args:
        src: the store to read.
        dest: the store to write; it may already hold an earlier (partial) copy.
        run: only this run's streams and metadata (its agent instances' included), and
            the streams outside it that it reads (:func:`run_inputs`; refs in items are
            found while copying, transitively).
        streams: only streams whose name matches this :mod:`fnmatch` glob (with their
            ``#effects`` streams, and the metadata of the matching executions).
        progress: called with ``(items copied, items to copy)`` as the copy advances.
        skip_trimmed: leave out the streams a trim deleted items of (ephemeral streams),
            instead of refusing the copy.

    Raises:
        StoreError: a destination stream holds more items than its source (not a copy).
        TrimmedError: a selected stream was trimmed below what the copy needs (unless
            ``skip_trimmed``); nothing was written.
    """
    return await _Mirror(src, dest, _Selection(run, streams), skip_trimmed=skip_trimmed).copy(
        progress
    )


async def follow(
    src: LogStore,
    dest: LogStore,
    *,
    run: str | None = None,
    streams: str | None = None,
    poll: float = 0.5,
    stop: asyncio.Event,
    progress: Progress | None = None,
) -> CopyStats:
    """Copy ``src`` into ``dest`` again and again until ``stop`` is set, then once more.

    The destination lags the source by at most ``poll`` seconds plus one pass; the pass run
    after ``stop`` is set flushes what arrived meanwhile. Returns the sum of all passes.
    """
    mirror = _Mirror(src, dest, _Selection(run, streams))
    total: CopyStats | None = None
    while True:
        stopping = stop.is_set()
        stats = await mirror.copy(progress)
        total = stats if total is None else total + stats
        if stopping:
            return total
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)
