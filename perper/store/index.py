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
import zlib
from collections.abc import Mapping, Sequence
from itertools import accumulate
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
    "item_places",
    "normalize_index",
    "sqlite_delete_rows",
    "sqlite_rows",
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
#: The hidden column holding the CRC-32 of each item's bytes (a query checks the bytes
#: it fetches against it, in place of the whole segment's checksum).
CHECK = "perper_check"
#: The hidden column holding each row's bucket, ``seq >> BUCKET_BITS``: every SQL index
#: of a SQLite index table leads with it (see :func:`sqlite_create`).
BUCKET = "perper_bucket"
#: A bucket holds the rows of 4,096 consecutive seqs.
BUCKET_BITS = 12
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
    return item_places(data, items)[0]


def item_places(data: bytes, items: Sequence[Any]) -> tuple[list[int | None], list[int | None]]:
    """The locators of :func:`item_locators` and each item's CRC-32 (of its bytes alone),
    from one encoding of the items: a query fetches only an item's bytes and checks them
    against that checksum. Both all None if the items do not re-encode to exactly the
    stored bytes (compared in one piece, after the array header)."""
    encoded = codec.canonical_each(items)
    lengths = list(map(len, encoded))
    start = len(data) - sum(lengths)
    if start - _CRC_SIZE not in (1, 3, 5) or data[start:] != b"".join(encoded):
        nothing: list[int | None] = [None] * len(items)
        return nothing, list(nothing)
    offsets = accumulate(lengths, initial=start)
    locators: list[int | None] = [
        (offset << 32) | length for offset, length in zip(offsets, lengths, strict=False)
    ]
    checks: list[int | None] = list(map(zlib.crc32, encoded))
    return locators, checks


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
    columns = _columns(spec, stream, first, items)
    if locators is not None:
        columns.append(list(locators))
    return list(zip(range(first, first + len(items)), *columns, strict=True))


def _columns(spec: IndexSpec, stream: str, first: int, items: Sequence[Any]) -> list[list[Any]]:
    """One list of values per field of ``spec``, in item order (checked and converted)."""
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
    return columns


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
    """Create ``table`` for ``spec``: ``seq`` as its primary key, and one SQL index
    ``(perper_bucket, field)`` per field (the seq, its rowid, ends every index entry).

    Why the bucket leads: an index on ``(field, seq)`` takes each appended row at a random
    place in it, so a commit of 1,000 items wrote about a thousand scattered index pages
    (a 4 KiB page each, for 30 KiB of items). Led by ``seq >> BUCKET_BITS``, the rows of
    an append land in the one or two newest buckets, a handful of pages, while a point
    query makes one index search per bucket (245 for a million items) instead of one.
    """
    columns = "".join(f", {_quote(name)} {SQLITE_TYPES[kind]}" for name, kind in spec)
    # The bucket is a generated column: SQLite computes it, nothing binds it.
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER PRIMARY KEY, {BUCKET} INTEGER "
        f"GENERATED ALWAYS AS (seq >> {BUCKET_BITS}) VIRTUAL{columns}, {LOCATOR} INTEGER, "
        f"{CHECK} INTEGER)"
    )
    for name, _ in spec:
        db.execute(
            f"CREATE INDEX IF NOT EXISTS {table}_{name} ON {table} ({BUCKET}, {_quote(name)})"
        )


def sqlite_rows(
    spec: IndexSpec, stream: str, first: int, data: bytes, items: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The rows of ``table`` for the segment ``data`` at seq ``first`` holding ``items``:
    ``(seq, field values..., locator, check)`` (the bucket is generated).

    Raises:
        ConfigError: an item holds a value of another type than its field's.
    """
    locators, checks = item_places(data, items)
    columns = _columns(spec, stream, first, items)
    seqs = range(first, first + len(items))
    return list(zip(seqs, *columns, locators, checks, strict=True))


def sqlite_insert(
    db: sqlite3.Connection, table: str, spec: IndexSpec, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Put ``rows`` (from :func:`sqlite_rows`) into ``table``. Rows are written once, with
    their segment: a row at a seq that has one is refused (``sqlite3.IntegrityError``)
    rather than replaced (``OR REPLACE`` cost a sixth more per row)."""
    names = "".join(f"{_quote(name)}, " for name, _ in spec)
    marks = ", ".join("?" * (len(spec) + 3))
    db.executemany(f"INSERT INTO {table} (seq, {names}{LOCATOR}, {CHECK}) VALUES ({marks})", rows)


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
    bucketed: bool = True,
) -> list[QueryRow]:
    """The rows below ``stop`` matching the checked ``where``, in order, as
    :data:`~perper.store.base.QueryRow`.

    With ``segments_of`` (a stream id in the SQLite file's ``segments``), each row comes
    with its item's bytes, fetched in the same statement: as the one-item segment
    ``(seq, 1, CRC-32 + item bytes)`` with its locator, so the caller checks the checksum
    and decodes the item as it does a segment's (a row without a locator comes alone, and
    its segment is read). ``bucketed=False``: a table of format 4 (``(field, seq)``
    indexes, no bucket or check column), read by a read-only open.
    """
    args: list[Any] = []
    cte = buckets = ""
    if bucketed:
        # One index search per bucket below stop: the bucket list is a recursive CTE.
        cte = (
            "WITH RECURSIVE perper_buckets(perper_b) AS (SELECT 0 UNION ALL SELECT "
            "perper_b + 1 FROM perper_buckets WHERE perper_b < ?) "
        )
        buckets = f"t.{BUCKET} IN perper_buckets AND "
        args.append((stop - 1) >> BUCKET_BITS)
    columns = f"t.seq, t.{LOCATOR}"
    if segments_of is not None and bucketed:
        # The item's bytes, by a subquery that names only its own table (a field may be
        # called like a column of segments); substr counts from 1.
        columns += (
            f", t.{CHECK}, (SELECT substr(s.data, (t.{LOCATOR} >> 32) + 1, t.{LOCATOR} & "
            "4294967295) FROM segments AS s WHERE s.stream_id = ? AND s.first_seq <= t.seq "
            "ORDER BY s.first_seq DESC LIMIT 1)"
        )
        args.append(segments_of)
    args += [stop, *params, -1 if limit is None else limit]
    rows = db.execute(
        f"{cte}SELECT {columns} FROM {table} AS t WHERE {buckets}t.seq < ? AND ({where}\n) "
        f"ORDER BY {order_by} LIMIT ?",
        args,
    ).fetchall()
    if segments_of is None or not bucketed:
        return [(row[0], row[1], None) for row in rows]
    found: list[QueryRow] = []
    for seq, locator, check, chunk in rows:
        if locator is None or check is None or type(chunk) is not bytes:
            found.append((seq, None, None))
        else:
            item = check.to_bytes(_CRC_SIZE, "big") + chunk
            found.append((seq, (_CRC_SIZE << 32) | len(chunk), (seq, 1, item)))
    return found


def sqlite_delete_rows(db: sqlite3.Connection, table: str, below: int | None = None) -> None:
    """Delete index rows of ``table``: those at a seq below ``below`` (what a trim deleted
    the items of), or with ``below=None`` the whole table and its SQL indexes (the stream
    is deleted). Run inside the transaction that deletes the segments, so a crash leaves
    both or neither."""
    if below is None:
        db.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        db.execute(f"DELETE FROM {table} WHERE seq < ?", (below,))
