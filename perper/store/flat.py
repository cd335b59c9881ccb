"""Flat tables: each exported stream as a plain SQLite table (``perper export --flat``).

``seq`` plus the item's top-level fields, for sqlite3 and Datasette. Written with
sqlite-utils (the ``export`` extra), which creates and widens tables as fields appear.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perper import codec
from perper.errors import ConfigError
from perper.store.base import LogStore
from perper.store.mirror import selected_streams

__all__ = ["flat_rows", "flat_table_name", "write_flat_tables"]

#: Tables of a perper SQLite log; a flat table never takes one of these names.
_RESERVED = {"streams", "segments", "runs", "executions", "checkpoints", "leases"}


def flat_table_name(stream: str) -> str:
    """The plain table a stream is exported to: its name, unless a perper table has it."""
    if stream in _RESERVED or stream.lower().startswith("sqlite_"):
        return f"stream:{stream}"
    return stream


def flat_rows(first: int, items: list[Any]) -> Iterator[dict[str, Any]]:
    """Rows of a flat table: ``seq`` plus the item's top-level fields for a dict item (a
    field named ``seq`` becomes ``seq_``), or ``value`` for any other item; nested values
    as JSON text."""
    for seq, item in enumerate(items, first):
        row: dict[str, Any] = {"seq": seq}
        if type(item) is dict:
            for key, value in item.items():
                name = str(key)
                row["seq_" if name == "seq" else name] = _cell(value)
        else:
            row["value"] = _cell(item)
        yield row


def _cell(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, float, str, bytes):
        return value
    if kind is int:
        return value if -(2**63) <= value < 2**63 else str(value)  # SQLite holds int64
    return json.dumps(codec.to_jsonable(value), ensure_ascii=False)


async def write_flat_tables(
    store: LogStore, path: Path, *, run: str | None = None, streams: str | None = None
) -> list[str]:
    """Write (or bring up to date) a plain table per exported stream in the SQLite file.

    Each table continues after its highest ``seq``, so re-running an export only adds rows.
    Returns the table names.
    """
    try:
        import sqlite_utils
    except ImportError as error:
        raise ConfigError(
            f"--flat needs sqlite-utils: pip install 'perper[export]' ({error})"
        ) from error
    infos = await selected_streams(store, run=run, streams=streams)
    db = sqlite_utils.Database(path)
    names = []
    try:
        for info in infos:
            name = flat_table_name(info.name)
            names.append(name)
            table = db.table(name)
            start = 0
            if table.exists():
                quoted = '"' + name.replace('"', '""') + '"'
                done = db.execute(f"SELECT max(seq) FROM {quoted}").fetchone()[0]
                start = 0 if done is None else done + 1
            else:
                table.create({"seq": int}, pk="seq")
            columns = {column.name for column in table.columns}
            async for first, items in store.read_batches(info.name, start=start, stop=info.head):
                rows = list(flat_rows(first, items))
                for column, kind in _column_types(rows).items():
                    if column not in columns:
                        table.add_column(column, kind)
                        columns.add(column)
                table.insert_all(rows, pk="seq", replace=True)
    finally:
        db.close()
    return names


def _column_types(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A column type per field: the Python type its values share, else ``"BLOB"`` (no type
    affinity, so SQLite keeps each value as it is: ``3`` stays an integer next to text)."""
    seen: dict[str, set[type]] = {}
    for row in rows:
        for column, value in row.items():
            kinds = seen.setdefault(column, set())
            if value is not None:
                kinds.add(type(value))
    types: dict[str, Any] = {}
    for column, kinds in seen.items():
        if len(kinds) == 1:
            types[column] = kinds.pop()
        elif kinds == {int, float}:
            types[column] = float
        else:
            types[column] = "BLOB"
    return types
