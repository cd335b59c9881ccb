"""Indexed streams: index declarations, the rows they extract, and checked SQL conditions.

A stream may be **indexed**: a declaration such as ``{"user": int, "amount": float}``
names fields that every item carries (dict keys, or attributes of a registered dataclass)
and their types. Each stored item then has one **index row** ``(seq, user, amount)``, a
missing field being NULL, and :meth:`perper.store.base.LogStore.query` runs a SQL
condition over those rows.

Conditions are checked here, once, for every backend, with SQLite's own parser: the
condition is compiled (never run) as ``SELECT seq FROM t WHERE (condition)`` against an
in-memory table ``t`` that holds only ``seq`` and the indexed columns, under an
authorizer that refuses reading any other table and any function outside a small
portable list; a ``;`` or a subquery (``SELECT``, ``WITH``, ``VALUES`` outside string
literals) is refused on the text. An unknown field, invalid SQL, a ``;``, a
subquery or a named parameter is a :class:`~perper.errors.ConfigError` naming it and the
indexed fields. Parameters are always bound (``?``), never spliced into the text.

Python's ``sqlite3`` is the parser because it is SQLite itself (what the SQLite backend
runs the condition with), ships with Python, and its authorizer sees the compiled
statement, not a re-implementation of the grammar; the accepted subset (comparisons,
``AND``/``OR``/``NOT``, ``IN``, ``BETWEEN``, ``LIKE``, ``IS NULL``, arithmetic and the
functions in :data:`FUNCTIONS`) means the same in Ignite's SQL.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perper import codec
from perper.errors import ConfigError, FormatError

if TYPE_CHECKING:
    from perper.store.base import QueryRow

__all__ = [
    "FUNCTIONS",
    "INDEX_TYPES",
    "IndexSpec",
    "check_order_by",
    "check_params",
    "check_where",
    "decode_spec",
    "encode_spec",
    "index_rows",
    "item_at",
    "item_locators",
    "normalize_index",
    "sqlite_delete_rows",
]

#: Index field types: the Python type -> its name in a stored declaration.
INDEX_TYPES: dict[type, str] = {
    int: "int",
    float: "float",
    str: "str",
    bool: "bool",
    bytes: "bytes",
}
_TYPES_BY_NAME = {name: kind for kind, name in INDEX_TYPES.items()}

#: SQLite column type of each index field type.
SQLITE_TYPES = {
    "int": "INTEGER",
    "float": "REAL",
    "str": "TEXT",
    "bool": "INTEGER",
    "bytes": "BLOB",
}

#: Functions a condition may call: scalar ones that SQLite and Ignite's SQL both have.
FUNCTIONS = frozenset({"abs", "coalesce", "ifnull", "length", "lower", "upper", "round", "like"})

#: A declaration as stored: ``((field, type name), ...)`` in declaration order.
IndexSpec = tuple[tuple[str, str], ...]

#: The hidden column of SQLite index tables holding each item's locator.
LOCATOR = "perper_locator"
_CRC_SIZE = 4  # the checksum before a segment's packed array (perper/store/base.py)
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_ORDER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(ASC|DESC))?\s*\Z", re.IGNORECASE)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_NAMED = re.compile(r"[:@$][A-Za-z_0-9]|\?\d")
_UNSAFE = re.compile(r";|\b(?:SELECT|WITH|VALUES)\b", re.IGNORECASE)


def normalize_index(index: Any, *, where: str = "index") -> IndexSpec:
    """Check an index declaration (``{"user": int, ...}``) and return it as stored.

    Raises:
        ConfigError: ``index`` is not a non-empty dict, a field name is not an identifier
            (or is ``seq``, which every row has), or a type is not one of
            int, float, str, bool, bytes.
    """
    if isinstance(index, tuple) and all(
        isinstance(pair, tuple) and len(pair) == 2 for pair in index
    ):
        index = {name: _TYPES_BY_NAME.get(kind, kind) for name, kind in index}
    if not isinstance(index, Mapping) or not index:
        raise ConfigError(
            f"{where}={index!r}: declare the indexed fields as a non-empty dict of field "
            'name to type, such as {"user": int, "amount": float}'
        )
    spec: list[tuple[str, str]] = []
    for name, kind in index.items():
        if (
            not isinstance(name, str)
            or not _FIELD.match(name)
            or name.lower() == "seq"
            or name.lower().startswith("perper_")
        ):
            raise ConfigError(
                f"{where}: field name {name!r} is not usable: index fields are identifiers "
                "(letters, digits, _; not starting with a digit; at most 63 characters) "
                "other than 'seq', which every index row has, and not starting with "
                "'perper_'"
            )
        type_name = INDEX_TYPES.get(kind) if isinstance(kind, type) else None
        if type_name is None:
            raise ConfigError(
                f"{where}: field {name!r} has type {kind!r}; index fields are one of "
                "int, float, str, bool, bytes"
            )
        spec.append((name, type_name))
    lowered = [name.lower() for name, _ in spec]
    if len(set(lowered)) != len(lowered):
        raise ConfigError(f"{where}: field names {[n for n, _ in spec]} repeat (SQL ignores case)")
    return tuple(spec)


def encode_spec(spec: IndexSpec) -> str:
    """The stored text of a declaration: a JSON list of ``[field, type]`` pairs."""
    return json.dumps([list(pair) for pair in spec])


def decode_spec(text: str, *, where: str = "") -> IndexSpec:
    """Read a stored declaration back.

    Raises:
        FormatError: the text is not a declaration this perper wrote.
    """
    try:
        pairs = json.loads(text)
        spec = tuple((str(name), str(kind)) for name, kind in pairs)
    except (ValueError, TypeError) as error:
        raise FormatError(f"{where}: a stored index declaration is corrupt ({error})") from None
    if not spec or any(kind not in _TYPES_BY_NAME or not _FIELD.match(n) for n, kind in spec):
        raise FormatError(f"{where}: a stored index declaration {text!r} is corrupt")
    return spec


def describe(spec: IndexSpec) -> str:
    """``user int, amount float``: a declaration in words."""
    return ", ".join(f"{name} {kind}" for name, kind in spec)


def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


def _value(value: Any, name: str, kind: str, stream: str, seq: int) -> Any:
    if value is None:
        return None
    actual = type(value)
    if kind in ("int", "bool") and actual in (int, bool):
        return int(value)
    if kind == "float" and actual in (float, int):
        return float(value)
    if (kind == "str" and actual is str) or (kind == "bytes" and actual is bytes):
        return value
    raise ConfigError(
        f"stream {stream!r}, seq {seq}: indexed field {name!r} is declared {kind} but the item "
        f"holds {value!r} ({actual.__name__}); yield a {kind} (or leave the field out for NULL)"
    )


# The value types a column takes as they are (anything else goes through _value).
_AS_IS: dict[str, frozenset[type]] = {
    "int": frozenset({int, type(None)}),
    "float": frozenset({float, type(None)}),
    "str": frozenset({str, type(None)}),
    "bool": frozenset({bool, type(None)}),
    "bytes": frozenset({bytes, type(None)}),
}


def item_locators(data: bytes, items: Sequence[Any]) -> list[int | None]:
    """Where each item's bytes sit in the segment ``data`` holding ``items``: ``(offset
    << 32) | length``, so a query decodes one item, not its whole segment. All None if
    the items do not re-encode to exactly the stored bytes (then the segment is decoded).
    """
    packed = memoryview(data)
    encoded = [codec.canonical(item) for item in items]
    header = len(data) - _CRC_SIZE - sum(map(len, encoded))
    if header not in (1, 3, 5):
        return [None] * len(items)
    locators: list[int | None] = []
    offset = _CRC_SIZE + header
    for chunk in encoded:
        if packed[offset : offset + len(chunk)] != chunk:
            return [None] * len(items)
        locators.append((offset << 32) | len(chunk))
        offset += len(chunk)
    return locators


def item_at(data: bytes, locator: int, *, stream: str, seq: int, where: str) -> Any:
    """The item a locator from :func:`item_locators` points at in a checked segment.

    Raises:
        FormatError: the locator does not point at one item (a corrupt index).
    """
    offset, length = locator >> 32, locator & 0xFFFFFFFF
    if offset < _CRC_SIZE or offset + length > len(data):
        raise FormatError(
            f"{where}: stream {stream!r}, seq {seq}: its index row points outside its "
            "segment: the index is corrupt"
        )
    return codec.unpack(data[offset : offset + length])


def index_rows(
    spec: IndexSpec,
    stream: str,
    first: int,
    items: Sequence[Any],
    locators: Sequence[int | None] | None = None,
) -> list[tuple[Any, ...]]:
    """The index rows ``(seq, field values...)`` of ``items`` stored from seq ``first``,
    each followed by its item's locator if ``locators`` is given.

    Raises:
        ConfigError: an item holds a value of another type than its field's.
    """
    columns: list[list[Any]] = []
    for name, kind in spec:
        try:
            column = [item.get(name) for item in items]  # dicts: the usual case, fast
        except AttributeError:
            column = [_get(item, name) for item in items]
        if not _AS_IS[kind].issuperset(map(type, column)):
            column = [
                _value(value, name, kind, stream, seq) for seq, value in enumerate(column, first)
            ]
        columns.append(column)
    if locators is not None:
        columns.append(list(locators))
    return list(zip(range(first, first + len(items)), *columns, strict=True))


def check_params(params: Any, *, stream: str) -> tuple[Any, ...]:
    """Return the query parameters as a tuple, refusing what SQL cannot bind.

    Raises:
        ConfigError: ``params`` is not a list or tuple, or holds a value other than
            None, int, float, str, bool or bytes.
    """
    if params is None:
        return ()
    if not isinstance(params, (list, tuple)):
        raise ConfigError(
            f"query on {stream!r}: params={params!r}: pass a list of values, one per '?'"
        )
    for value in params:
        if value is not None and type(value) not in INDEX_TYPES:
            raise ConfigError(
                f"query on {stream!r}: parameter {value!r} is a {type(value).__name__}; "
                "parameters are None, int, float, str, bool or bytes"
            )
    return tuple(int(v) if type(v) is bool else v for v in params)


def check_order_by(order_by: str | None, spec: IndexSpec, *, stream: str) -> str:
    """The ``ORDER BY`` clause for ``order_by`` (a comma-separated list of ``field`` or
    ``field DESC``, fields being ``seq`` or indexed ones), always ending in ``seq`` so the
    order is total.

    Raises:
        ConfigError: a term is not an indexed field with an optional ASC or DESC.
    """
    names = {name.lower(): name for name, _ in spec}
    terms: list[str] = []
    has_seq = False
    for term in (order_by or "seq").split(","):
        match = _ORDER.match(term)
        field = match.group(1).lower() if match else None
        if match is None or (field != "seq" and field not in names):
            raise ConfigError(
                f"query on {stream!r}: order_by={order_by!r}: {term.strip()!r} is not "
                f"a field; order by seq or an indexed field ({_fields(spec)}), "
                "optionally followed by ASC or DESC"
            )
        column = "seq" if field == "seq" else names[field or ""]
        has_seq = has_seq or column == "seq"
        quoted = "seq" if column == "seq" else _quote(column)  # seq unquoted: Ignite's SEQ
        terms.append(f"{quoted} {(match.group(2) or 'ASC').upper()}")
    if not has_seq:
        terms.append("seq ASC")
    return ", ".join(terms)


def check_where(where: str, params: Sequence[Any], spec: IndexSpec, *, stream: str) -> str:
    """Check a query condition over ``spec``'s fields; return it as it is run.

    Raises:
        ConfigError: it is not a str, names a field that is not indexed (the message names
            it and the indexed fields), is not valid SQL, holds more than one statement,
            reads another table, has a subquery, calls a function not in
            :data:`FUNCTIONS`, uses named parameters, or has another number of ``?`` than
            ``params`` has values.
    """
    if not isinstance(where, str) or not where.strip():
        raise ConfigError(
            f"query on {stream!r}: where={where!r}: pass a SQL condition over the indexed "
            f'fields ({_fields(spec)}), such as "user = ?" (use "1" for every item)'
        )
    bare = _STRINGS.sub("''", where)
    if _NAMED.search(bare):
        raise ConfigError(
            f"query on {stream!r}: condition {where!r} uses a named or numbered parameter; "
            "use plain '?' placeholders, one per value of params, in order"
        )
    # SQLite may prepare a statement twice (a LIKE with a bound pattern), so subqueries
    # and statement separators are refused on the text (outside string literals).
    unsafe = _UNSAFE.search(bare)
    if unsafe:
        what = "';' (a second statement)" if unsafe.group() == ";" else "a subquery"
        raise ConfigError(
            f"query on {stream!r}: condition {where!r} is refused: it holds {what}, which a "
            f"query condition may not; write a condition over {_fields(spec)} with '?' for "
            'values, such as "user = ?"'
        )
    refused: list[str] = []

    def authorize(action: int, arg1: str | None, arg2: str | None, *_: Any) -> int:
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            if arg1 == "t":
                return sqlite3.SQLITE_OK
            refused.append(f"reading table {arg1!r}")
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in FUNCTIONS:
                return sqlite3.SQLITE_OK
            refused.append(f"the function {arg2}()")
            return sqlite3.SQLITE_DENY
        refused.append("this statement")
        return sqlite3.SQLITE_DENY

    db = sqlite3.connect(":memory:")
    try:
        columns = "".join(f", {_quote(name)} {SQLITE_TYPES[kind]}" for name, kind in spec)
        db.execute(f"CREATE TABLE t (seq INTEGER PRIMARY KEY{columns})")
        db.set_authorizer(authorize)
        try:
            db.execute(f"EXPLAIN SELECT seq FROM t WHERE ({where}\n)", tuple(params)).fetchall()
        except (sqlite3.Error, sqlite3.Warning) as error:
            message = str(error)
            missing = re.match(r"no such column: (.+)", message)
            if missing:
                raise ConfigError(
                    f"query on {stream!r}: condition {where!r} names {missing.group(1)!r}, "
                    f"which is not an indexed field; the indexed fields are {_fields(spec)}"
                ) from None
            if refused:
                reason = f"it uses {refused[0]}, which a query condition may not"
            elif "bindings" in message:
                reason = f"{message}: pass one value in params per '?'"
            else:
                reason = f"it is not a valid SQL condition ({message})"
            raise ConfigError(
                f"query on {stream!r}: condition {where!r} is refused: {reason}; write a "
                f"condition over {_fields(spec)} with '?' for values, such as \"user = ?\""
            ) from None
    finally:
        db.close()
    return where


def _fields(spec: IndexSpec) -> str:
    return ", ".join(["seq", *(name for name, _ in spec)])


def _quote(name: str) -> str:
    return f'"{name}"'


# ------------------------------------------------------------------ SQLite tables
# The SQLite backend keeps index rows in its file, MemoryStore in an in-memory database:
# the same tables and statements either way.


def sqlite_table(stream_id: int) -> str:
    """The name of the index table of the stream with row id ``stream_id``."""
    return f"stream_index_{int(stream_id)}"


def sqlite_create(db: sqlite3.Connection, table: str, spec: IndexSpec) -> None:
    """Create ``table`` for ``spec``: ``seq`` as its primary key and one SQL index per field."""
    columns = "".join(f", {_quote(name)} {SQLITE_TYPES[kind]}" for name, kind in spec)
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY{columns}, {LOCATOR} INTEGER)"
    )
    for name, _ in spec:
        db.execute(f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table} ({_quote(name)}, seq)")


def sqlite_insert(
    db: sqlite3.Connection, table: str, spec: IndexSpec, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Put ``rows`` (with locators) into ``table``; a row at a seq that has one replaces it."""
    marks = ", ".join("?" * (len(spec) + 2))
    db.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)


def sqlite_select(
    db: sqlite3.Connection,
    table: str,
    where: str,
    params: tuple[Any, ...],
    *,
    stop: int,
    order_by: str,
    limit: int | None,
    segments_of: int | None = None,
) -> list[QueryRow]:
    """The rows below ``stop`` matching the checked ``where``, in order, as
    :data:`~perper.store.base.QueryRow`; with ``segments_of`` (a stream id in the SQLite
    file's ``segments``) each with its segment, fetched in the same statement."""
    columns, joined = f"seq, {LOCATOR}", ""
    args: list[Any] = [stop, *params, -1 if limit is None else limit]
    if segments_of is not None:
        columns += ", s.first_seq, s.count, s.data"
        joined = (
            " JOIN segments AS s ON s.stream_id = ? AND s.first_seq = (SELECT max(first_seq) "
            "FROM segments WHERE stream_id = ? AND first_seq <= t.seq)"
        )
        args = [segments_of, segments_of, *args]
    rows = db.execute(
        f"SELECT {columns} FROM {table} AS t{joined} WHERE seq < ? AND ({where}\n) "
        f"ORDER BY {order_by} LIMIT ?",
        args,
    ).fetchall()
    if segments_of is None:
        return [(row[0], row[1], None) for row in rows]
    return [(row[0], row[1], (row[2], row[3], row[4])) for row in rows]


def sqlite_delete_rows(db: sqlite3.Connection, table: str, below: int | None = None) -> None:
    """Delete index rows of ``table``: those at a seq below ``below`` (what a trim deleted
    the items of), or with ``below=None`` the whole table and its SQL indexes (the stream
    is deleted). Run inside the transaction that deletes the segments, so a crash leaves
    both or neither."""
    if below is None:
        db.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        db.execute(f"DELETE FROM {table} WHERE seq < ?", (below,))
