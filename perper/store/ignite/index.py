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
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from perper.store.base import QueryRow, segment_items
from perper.store.ignite.layout import META_CACHE, escape
from perper.store.index import (
    IndexSpec,
    decode_spec,
    encode_spec,
    index_rows,
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
            f"CREATE TABLE IF NOT EXISTS {table} (seq BIGINT PRIMARY KEY{columns}) "
            'WITH "template=perper_index"',
        )
        for number, (name, _) in enumerate(spec):
            await self.sql(
                what, f'CREATE INDEX IF NOT EXISTS {table}_{number} ON {table} ("{name}", seq)'
            )
        self._tables.add(table)

    async def _merge(self, stream: str, spec: IndexSpec, rows: Sequence[tuple[Any, ...]]) -> None:
        table = self.table(stream)
        columns = ", ".join(["seq", *(f'"{name}"' for name, _ in spec)])
        marks = "(" + ", ".join("?" * (len(spec) + 1)) + ")"
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
        return index_rows(spec, stream, seq, segment_items(data))

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
        """Index the stored segments between the watermark and ``stop``."""
        await self._create_table(stream, spec)
        while True:
            mark = await self._watermark(stream)
            if mark >= stop:
                return
            end = mark
            async for first, count, data in self.store.segments(stream, mark, stop):
                rows = index_rows(spec, stream, first, segment_items(data))
                await self._merge(stream, spec, rows)
                end = first + count
            if end <= mark or await self._advance(stream, mark, end):
                return

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
        query = (
            f"SELECT seq FROM {self.table(stream)} AS t WHERE seq < ? AND "
            f"({ignite_condition(where, spec)}\n) ORDER BY {order_by}"
        )
        args: list[Any] = [stop, *params]
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        rows = await self.sql(f"querying {stream!r}", query, args)
        return [(int(row[0]), None, None) for row in rows]
