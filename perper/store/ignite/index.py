"""Indexed streams on Ignite: index rows in an Ignite SQL table per indexed stream
(docs/ignite.md, "Indexed streams"; needs the ``ignite-indexing`` module in the node).

* The declaration is ``{ns}|i|{stream}`` in the metadata cache (``put_if_absent``: the
  first writer's wins), listed in the directory area ``indexes``.
* The rows live in the table ``PERPER_IDX_{hash of namespace and stream}`` (``seq BIGINT
  PRIMARY KEY`` and one column per field, each with a SQL index), created by DDL with
  ``IF NOT EXISTS`` from the stored declaration, from the node's cache template
  ``perper_index`` (perper/fabric/Node.java: few partitions, the caches' backups).
* Rows are only ever derived from stored segments, and written with ``MERGE`` keyed by
  seq (idempotent): a writer computes a segment's rows before its ``put_if_absent`` (so a
  bad item is refused before anything is stored) and merges them once the put has won.
  The **watermark** ``{ns}|iw|{stream}`` (8 bytes) is the seq below which every row is
  written; a writer moves it past its segment when it was at the segment's start, and a
  query first indexes the stored segments between the watermark and its stop. So a crash
  between a segment and its rows loses nothing (the next query indexes them), duplicates
  nothing (one row per seq), and a query never returns a row at or above its stop.
* A trim records its floor, deletes the segments, then the rows below the floor; queries
  select only from the floor on, so a crash in between answers no row whose item is gone
  (the next trim deletes what was left). Deleting a stream deletes its index first
  (watermark, table, declaration: :meth:`IgniteIndexes.deleted`).
* A query fetches the segments of its matches with ``get_all`` (``segments_at`` in the
  store), a few round trips in all.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from perper.errors import TrimmedError
from perper.store.base import QueryRow, segment_items
from perper.store.ignite.layout import META_CACHE, escape
from perper.store.index import (
    LOCATOR,
    IndexSpec,
    decode_spec,
    encode_spec,
    index_rows,
    item_locators,
)

if TYPE_CHECKING:
    from perper.store.ignite.connection import Connection
    from perper.store.ignite.store import IgniteStore

__all__ = ["IgniteIndexes", "ignite_condition"]

#: The directory area listing indexed streams.
INDEXES_AREA = "indexes"
_WATERMARK = struct.Struct(">q")
_IGNITE_TYPES = {"int": "BIGINT", "float": "DOUBLE", "str": "VARCHAR", "bool": "BIGINT"}
_IGNITE_TYPES["bytes"] = "VARBINARY"
#: Rows per MERGE statement (each row binds one value per column).
_MERGE_ROWS = 256
_STRINGS = re.compile(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")")
_IDENTIFIER = re.compile(r"(?<![\w\"])([A-Za-z_][A-Za-z0-9_]*)(?!\s*\()")


def ignite_condition(where: str, spec: IndexSpec) -> str:
    """A checked condition as Ignite's SQL reads it: field names quoted as the columns
    were created (H2 would upper-case them), string literals untouched."""
    names = {name.lower(): name for name, _ in spec}

    def quote(match: re.Match[str]) -> str:
        name = names.get(match.group(1).lower())
        return f'"{name}"' if name is not None else match.group(1)

    parts = _STRINGS.split(where)
    return "".join(
        part if index % 2 else _IDENTIFIER.sub(quote, part) for index, part in enumerate(parts)
    )


def _rows(spec: IndexSpec, stream: str, first: int, data: bytes) -> list[tuple[Any, ...]]:
    """The rows of the segment ``data`` at ``first``, each with its item's locator (where
    its bytes sit in the segment, so a query decodes one item, not the segment)."""
    items = segment_items(data)
    return index_rows(spec, stream, first, items, item_locators(data, items))


def _for_ignite(row: tuple[Any, ...]) -> list[Any]:
    # bool columns are BIGINT 0/1, as in SQLite.
    return [int(value) if type(value) is bool else value for value in row]


class IgniteIndexes:
    """The indexed streams of one :class:`~perper.store.ignite.store.IgniteStore`."""

    def __init__(self, store: IgniteStore) -> None:
        self.store = store
        self.io = store.io
        self.namespace = store.namespace
        self.specs: dict[str, IndexSpec] = {}
        self._tables: set[str] = set()  # created (or found) by this process
        self._watermarks: dict[str, int] = {}  # last known, per stream

    # ------------------------------------------------------------------- keys

    def _key(self, stream: str) -> str:
        return f"{self.namespace}|i|{escape(stream)}"

    def _watermark_key(self, stream: str) -> str:
        return f"{self.namespace}|iw|{escape(stream)}"

    def table(self, stream: str) -> str:
        digest = hashlib.sha1(f"{self.namespace}|{stream}".encode("utf-8", "surrogatepass"))
        return "PERPER_IDX_" + digest.hexdigest()[:24].upper()

    # -------------------------------------------------------------------- SQL

    async def sql(self, what: str, query: str, args: Sequence[Any] = ()) -> list[list[Any]]:
        async def run(conn: Connection) -> list[list[Any]]:
            async with conn.client.sql(query, query_args=list(args), page_size=4096) as cursor:
                return [row async for row in cursor]

        rows, _ = await self.io.request(what, run)
        return rows

    async def _create_table(self, stream: str, spec: IndexSpec) -> None:
        table = self.table(stream)
        if table in self._tables:
            return
        columns = "".join(f', "{name}" {_IGNITE_TYPES[kind]}' for name, kind in spec)
        what = f"creating the index table of {stream!r}"
        await self.sql(
            what,
            f"CREATE TABLE IF NOT EXISTS {table} (seq BIGINT PRIMARY KEY{columns}, "
            f'{LOCATOR} BIGINT) WITH "template=perper_index"',
        )
        # A table made before rows had locators gains the column (its rows keep NULL:
        # their items are found by decoding the segment, as before).
        await self.sql(what, f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {LOCATOR} BIGINT")
        for number, (name, _) in enumerate(spec):
            await self.sql(
                what, f'CREATE INDEX IF NOT EXISTS {table}_{number} ON {table} ("{name}", seq)'
            )
        self._tables.add(table)

    async def _merge(self, stream: str, spec: IndexSpec, rows: Sequence[tuple[Any, ...]]) -> None:
        table = self.table(stream)
        columns = ", ".join(["seq", *(f'"{name}"' for name, _ in spec), LOCATOR])
        marks = "(" + ", ".join("?" * (len(spec) + 2)) + ")"
        for start in range(0, len(rows), _MERGE_ROWS):
            chunk = rows[start : start + _MERGE_ROWS]
            args = [value for row in chunk for value in _for_ignite(row)]
            await self.sql(
                f"indexing {stream!r}",
                f"MERGE INTO {table} ({columns}) VALUES {', '.join([marks] * len(chunk))}",
                args,
            )

    # ----------------------------------------------------------- declarations

    async def index_of(self, stream: str) -> IndexSpec | None:
        spec = self.specs.get(stream)
        if spec is None:
            raw = await self.io.get(META_CACHE, self._key(stream), f"looking up {stream!r}")
            if raw is None:
                return None
            spec = self.specs[stream] = decode_spec(bytes(raw).decode(), where=self.store.url)
        return spec

    async def indexes(self, prefix: str) -> dict[str, IndexSpec]:
        names = await self.store.directory.listed(INDEXES_AREA, prefix, "listing indexes")
        found: dict[str, IndexSpec] = {}
        for name in names:
            spec = await self.index_of(name)
            if spec is not None:
                found[name] = spec
        return found

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        what = f"indexing {stream!r}"
        await self.store.directory.index(INDEXES_AREA, stream)
        encoded = encode_spec(spec).encode()
        if not await self.io.put_if_absent(META_CACHE, self._key(stream), encoded, what):
            self.specs.pop(stream, None)
            stored = await self.index_of(stream)
            assert stored is not None
            spec = stored
        self.specs[stream] = spec
        await self._create_table(stream, spec)
        await self._watermark(stream)  # so this process's writes can move it
        return spec

    # ------------------------------------------------------------------ writes

    def rows_for(self, stream: str, seq: int, data: bytes) -> list[tuple[Any, ...]] | None:
        """The rows of a segment about to be written, if this process knows the stream is
        indexed (a writer that does not know leaves them to the next query)."""
        spec = self.specs.get(stream)
        if spec is None:
            return None
        return _rows(spec, stream, seq, data)

    async def written(self, stream: str, seq: int, count: int, rows: list[tuple[Any, ...]]) -> None:
        """After the segment at ``seq`` was stored: merge its rows, move the watermark."""
        spec = self.specs[stream]
        await self._create_table(stream, spec)
        await self._merge(stream, spec, rows)
        if self._watermarks.get(stream) == seq:
            await self._advance(stream, seq, seq + count)

    async def _advance(self, stream: str, old: int, new: int) -> bool:
        key = self._watermark_key(stream)
        what = f"indexing {stream!r}"
        if old == 0:
            done = await self.io.put_if_absent(META_CACHE, key, _WATERMARK.pack(new), what)
            if not done:
                done = await self.io.replace(
                    META_CACHE, key, _WATERMARK.pack(0), _WATERMARK.pack(new), what
                )
        else:
            done = await self.io.replace(
                META_CACHE, key, _WATERMARK.pack(old), _WATERMARK.pack(new), what
            )
        if done:
            self._watermarks[stream] = new
        else:
            self._watermarks.pop(stream, None)
        return done

    async def _watermark(self, stream: str) -> int:
        raw = await self.io.get(META_CACHE, self._watermark_key(stream), f"indexing {stream!r}")
        mark = 0 if raw is None else int(_WATERMARK.unpack(bytes(raw))[0])
        self._watermarks[stream] = mark
        return mark

    async def catch_up(self, stream: str, spec: IndexSpec, stop: int) -> None:
        """Index the stored segments between the watermark and ``stop`` (from the first
        stored seq, if a trim deleted segments above the watermark)."""
        await self._create_table(stream, spec)
        if self._watermarks.get(stream, 0) >= stop:
            return  # this process moved it there, and a watermark only moves up
        while True:
            mark = await self._watermark(stream)
            if mark >= stop:
                return
            end = start = max(mark, await self.store.first_seq(stream))
            try:
                async for first, count, data in self.store.segments(stream, start, stop):
                    rows = _rows(spec, stream, first, data)
                    await self._merge(stream, spec, rows)
                    end = first + count
            except TrimmedError:
                continue  # trimmed meanwhile: again, from the new first stored seq
            if end <= mark or await self._advance(stream, mark, end):
                return

    # ------------------------------------------------------ trims and deletes

    async def trimmed(self, stream: str, below: int) -> None:
        """After a trim deleted the segments below ``below``: delete their rows. Until
        then queries skip them (they select from the first stored seq on), and rows left
        by a crash or a late writer are deleted by the next trim, which deletes every row
        below its floor."""
        spec = await self.index_of(stream)
        if spec is None or below <= 0:
            return
        await self._create_table(stream, spec)
        table = self.table(stream)
        await self.sql(f"trimming {stream!r}", f"DELETE FROM {table} WHERE seq < ?", [below])

    def forget(self, stream: str) -> None:
        """Forget what this process knew of the stream's index (another process deleted the
        stream, and may have declared another index for a new stream of that name)."""
        self.specs.pop(stream, None)
        self._watermarks.pop(stream, None)
        self._tables.discard(self.table(stream))
        self.store.directory.forget(INDEXES_AREA, stream)

    async def deleted(self, stream: str) -> None:
        """Before a stream's segments are deleted: delete its index. The watermark goes
        first, then the table, then the declaration, so a crash at any point leaves either
        an index whose next query re-derives every row from the (still stored) segments,
        or a stream that is no longer indexed, never rows without their items."""
        what = f"deleting the index of {stream!r}"
        self._watermarks.pop(stream, None)
        if await self.index_of(stream) is None:
            return
        await self.io.remove_keys(META_CACHE, [self._watermark_key(stream)], what)
        table = self.table(stream)
        self._tables.discard(table)
        await self.sql(what, f"DROP TABLE IF EXISTS {table}")
        self.specs.pop(stream, None)
        await self.io.remove_keys(META_CACHE, [self._key(stream)], what)
        await self.store.directory.unindex(INDEXES_AREA, stream)

    # ----------------------------------------------------------------- queries

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
        spec = await self.index_of(stream)
        if spec is None:
            return []
        await self.catch_up(stream, spec, stop)
        # The floor as the query's head read (its end probe carries the trim record) and,
        # if a row's segment turns out trimmed, as re-read: a trim deletes rows only below
        # a floor it recorded first, so every row at or above it is there when selected.
        floor = self.store.known_floor(stream)
        for attempt in range(3):
            found = await self._select(stream, spec, where, params, floor, stop, order_by, limit)
            if all(fetched is not None for _, _, fetched in found) or attempt == 2:
                return found  # a row still without its segment: query() reports it trimmed
            floor = await self.store.first_seq(stream)
        raise AssertionError("unreachable")

    async def _select(
        self,
        stream: str,
        spec: IndexSpec,
        where: str,
        params: tuple[Any, ...],
        floor: int,
        stop: int,
        order_by: str,
        limit: int | None,
    ) -> list[QueryRow]:
        bounds, args = "seq < ?", [stop, *params]
        if floor > 0:  # rows below it may be left by a trim cut short: skipped
            bounds, args = "seq >= ? AND seq < ?", [floor, *args]
        query = (
            f"SELECT seq, {LOCATOR} FROM {self.table(stream)} AS t WHERE {bounds} AND "
            f"({ignite_condition(where, spec)}\n) ORDER BY {order_by}"
        )
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        rows = await self.sql(f"querying {stream!r}", query, args)
        # Every matching segment in a few get_all round trips, not one per segment.
        segments = await self.store.segments_at(stream, [int(row[0]) for row in rows])
        starts = sorted(segments)
        found: list[QueryRow] = []
        for seq, locator in rows:
            at = bisect.bisect_right(starts, seq) - 1
            segment = segments[starts[at]] if at >= 0 else None
            if segment is not None and seq < segment[0] + segment[1]:
                found.append((int(seq), locator, segment))
            else:
                found.append((int(seq), locator, None))
        return found
