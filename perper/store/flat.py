"""Flat tables: each exported stream also as a plain SQLite table (``perper export --flat``).

A flat table has a ``seq`` primary key and one column per top-level field of dict items
(``value`` for other items), nested values as JSON text, so ``sqlite3`` and Datasette can
query an exported log without perper. Written with sqlite-utils (``perper[export]``): it
creates tables and adds columns as new fields appear, which is all this needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perper import codec
from perper.errors import ConfigError
from perper.store.base import LogStore
from perper.store.mirror import selected_streams

__all__ = ["column_name", "flat_rows", "flat_table_name", "write_flat_tables"]

#: Tables of a perper SQLite log; a flat table never takes one of these names.
_RESERVED = {"streams", "segments", "segment_keys", "runs", "executions", "checkpoints", "leases"}
_SEQ_LIKE = re.compile(r"seq_*", re.IGNORECASE)


def flat_table_name(stream: str) -> str:
    """The plain table a stream is exported to: its name, unless a perper table has it."""
    if stream in _RESERVED or stream.lower().startswith("sqlite_"):
        return f"stream:{stream}"
    return stream


def column_name(field: str) -> str:
    """The column of an item field: the field's name, with one ``_`` added to names made of
    ``seq`` and underscores (``seq`` -> ``seq_``, ``seq_`` -> ``seq__``), so no field takes
    the ``seq`` column and no two fields share one."""
    return field + "_" if _SEQ_LIKE.fullmatch(field) else field


def flat_rows(first: int, items: list[Any]) -> Iterator[dict[str, Any]]:
    """Rows of a flat table: ``seq`` plus the item's top-level fields for a dict item (named
    by :func:`column_name`), or ``value`` for any other item; nested values as JSON text."""
    for seq, item in enumerate(items, first):
        row: dict[str, Any] = {"seq": seq}
        if type(item) is dict:
            for key, value in item.items():
                row[column_name(str(key))] = _cell(value)
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


def _check_columns(stream: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """Refuse fields whose names differ from another column only in case: SQLite column
    names ignore case, so they would overwrite each other. ``columns`` maps the lower-case
    name of every column so far to its name, and learns the rows' columns."""
    for row in rows:
        for name in row:
            known = columns.setdefault(name.lower(), name)
            if known != name:
                raise ConfigError(
                    f"stream {stream!r}: the item at seq {row['seq']} has a field {name!r} "
                    f"and the stream also has {known!r}; SQLite column names ignore case, so "
                    "--flat cannot keep both: rename one of the fields, or export without --flat"
                )


async def write_flat_tables(
    store: LogStore, path: Path, *, run: str | None = None, streams: str | None = None
) -> list[str]:
    """Write (or bring up to date) a plain table per exported stream in the SQLite file.

    Each table continues after its highest ``seq``, so re-running an export only adds rows.
    Returns the table names.

    Raises:
        ConfigError: sqlite-utils is missing, or two fields of a stream differ only in case.
    """
    try:
        import sqlite_utils
    except ImportError as error:
        raise ConfigError(
            f"--flat needs sqlite-utils: pip install 'perper[export]' ({error})"
        ) from error
    infos = await selected_streams(store, run=run, streams=streams)
    for info in infos:
        if info.head:
            await store.check_untrimmed(info.name, 0)  # no table with items missing
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
            columns = {column.name: column.name for column in table.columns}
            lowered = {column.lower(): column for column in columns}
            async for first, items in store.read_batches(info.name, start=start, stop=info.head):
                rows = list(flat_rows(first, items))
                _check_columns(info.name, rows, lowered)
                for column, kind in _column_types(rows).items():
                    if column not in columns:
                        table.add_column(column, kind)
                        columns[column] = column
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
