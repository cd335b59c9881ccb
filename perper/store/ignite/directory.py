"""The directory ``streams()`` and ``meta_scan()`` list from (docs/ignite.md, "Key layout").

Names (stream names, or the keys of one metadata table: an "area") are grouped by their
first path segment, the run (``""`` for names without ``/``), and spread over
:data:`~perper.store.ignite.layout.DIRECTORY_SHARDS` buckets by CRC-32; each bucket and each
area's list of groups is a sorted msgpack list updated by compare-and-set before the entry
it lists is created (a name whose writer died in between has no entry: listings skip it).
"""

from __future__ import annotations

import asyncio
import bisect
from typing import Any

from perper import codec
from perper.store.ignite.connection import Connector
from perper.store.ignite.layout import (
    DIRECTORY_SHARDS,
    META_CACHE,
    Layout,
    group_of,
    members,
    shard_of,
)

__all__ = ["Directory"]


class Directory:
    """Adds names to, and lists names from, the directory of one namespace."""

    def __init__(self, io: Connector, layout: Layout) -> None:
        self.io = io
        self.layout = layout
        # What this process has seen in the directory, (area, name) and (area, group):
        # each is indexed once.
        self.indexed: set[tuple[str, str]] = set()
        self.indexed_groups: set[tuple[str, str]] = set()
        #: The entry at each directory key as this process last read or wrote it: adding a
        #: name goes straight to the compare-and-set from it (a stale copy fails it).
        self.copies: dict[str, bytes] = {}

    async def index(self, area: str, name: str) -> None:
        """Add ``name`` to the directory of ``area`` (a metadata table, or the streams):
        to its group's bucket, and its group to the area's list of groups. Idempotent, and
        done before the entry itself is written: a listed name may lack an entry (its
        writer died in between; listings skip it), but no entry is ever left unlisted."""
        if (area, name) in self.indexed:
            return
        group = group_of(name)
        what = f"indexing {name!r}"
        bucket = self._add_member(self.layout.directory(area, group, shard_of(name)), name, what)
        if (area, group) not in self.indexed_groups:
            # Both at once: the entry is written only after both, so a crash between them
            # leaves at worst a listed name without an entry, never an unlisted entry.
            await asyncio.gather(self._add_member(self.layout.groups(area), group, what), bucket)
            _remember(self.indexed_groups, (area, group))
        else:
            await bucket
        _remember(self.indexed, (area, name))

    async def _add_member(self, key: str, member: str, what: str) -> None:
        """Insert ``member`` into the sorted msgpack list at ``key`` (compare-and-set)."""
        raw = self.copies.get(key)
        fresh = False
        while True:
            if raw is None:
                raw, fresh = await self.io.get(META_CACHE, key, what), True
                if raw is None:
                    new = codec.pack([member])
                    if await self.io.put_if_absent(META_CACHE, key, new, what):
                        self._copy(key, new)
                        return
                    continue
            listed = members(key, raw)
            at = bisect.bisect_left(listed, member)
            if at < len(listed) and listed[at] == member:
                if fresh:
                    self._copy(key, raw)
                    return
                raw = None  # listed in an old copy: only the stored entry can say it still is
                continue
            listed.insert(at, member)
            new = codec.pack(listed)
            if await self.io.replace(META_CACHE, key, raw, new, what):
                self._copy(key, new)
                return
            raw = None

    def _copy(self, key: str, raw: bytes) -> None:
        if len(self.copies) >= 4096:  # bounded: forgetting costs one read
            self.copies.clear()
        self.copies[key] = raw

    def forget(self, area: str, name: str) -> None:
        """Forget having seen ``name`` listed (another process deleted it): the next
        :meth:`index` lists it again."""
        self.indexed.discard((area, name))
        self.copies.pop(self.layout.directory(area, group_of(name), shard_of(name)), None)

    async def unindex(self, area: str, name: str) -> None:
        """Take ``name`` out of the directory of ``area`` (a deleted stream). Idempotent;
        its group stays listed (an empty group lists nothing)."""
        key = self.layout.directory(area, group_of(name), shard_of(name))
        what = f"unlisting {name!r}"
        self.indexed.discard((area, name))
        self.copies.pop(key, None)
        while True:
            raw = await self.io.get(META_CACHE, key, what)
            if raw is None:
                return
            listed = members(key, raw)
            at = bisect.bisect_left(listed, name)
            if at == len(listed) or listed[at] != name:
                return
            del listed[at]
            if await self.io.replace(META_CACHE, key, raw, codec.pack(listed), what):
                return

    async def listed(self, area: str, prefix: str, what: str) -> list[str]:
        """The names in the directory of ``area`` that start with ``prefix``, sorted."""
        if "/" in prefix:
            groups = [group_of(prefix)]
        else:
            # A name without "/" is in group ""; a name with one starts with a prefix
            # without one only if its group does.
            key = self.layout.groups(area)
            raw = await self.io.get(META_CACHE, key, what)
            known = members(key, raw) if raw is not None else []
            groups = [group for group in known if group == "" or group.startswith(prefix)]
        if not groups:
            return []
        keys = [
            self.layout.directory(area, group, shard)
            for group in groups
            for shard in range(DIRECTORY_SHARDS)
        ]
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 1024):
            found.update(await self.io.get_all(META_CACHE, keys[i : i + 1024], what))
        for key in keys:
            if type(found.get(key)) is bytes:
                self._copy(key, found[key])
        names = [
            name
            for key in keys
            if key in found
            for name in members(key, found[key])
            if name.startswith(prefix)
        ]
        if "/" not in prefix:
            # Read from the list of groups itself. A bucket alone proves nothing: index()
            # writes it beside the group, and a writer killed in between leaves the bucket
            # only; taking its group for listed would keep this process from ever adding it.
            for group in groups:
                _remember(self.indexed_groups, (area, group))
        for name in names:
            _remember(self.indexed, (area, name))
        names.sort()
        return names


def _remember(seen: set[tuple[str, str]], pair: tuple[str, str]) -> None:
    if len(seen) >= 65536:  # bounded: forgetting costs one idempotent re-index
        seen.clear()
    seen.add(pair)
