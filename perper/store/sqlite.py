"""SQLiteStore: the embedded default store, a real SQLite file.

Layout (format 5), readable with the ``sqlite3`` shell:

* ``streams(id, name, head, sealed, epoch)`` — one row per stream; ``head`` is its length,
  ``epoch`` the highest lease epoch that wrote to it (fencing).
* ``segments(stream_id, first_seq, count, data)`` — one row per stored segment (a batch,
  split at :attr:`~perper.store.base.LogStore.max_segment_bytes`); ``data`` is a CRC-32 of
  the batch's items packed as a msgpack array (4 bytes, big-endian), then that array.
  Reads check the checksum, that segments are contiguous and that they reach ``head``
  (format 3; format 2 had no checksum and is refused).
* ``segment_keys(stream_id, first_seq, keys)`` — the idempotency keys of a segment that
  :class:`perper.Producer` wrote (msgpack array, one key or nil per item), written in the
  transaction that writes the segment. Created by the first keyed append.
* ``stream_indexes(stream_id, fields)`` — the index declaration of each indexed stream
  (JSON ``[[field, type], ...]``), and per indexed stream a table
  ``stream_index_{stream_id}(seq INTEGER PRIMARY KEY, perper_bucket, field...,
  perper_locator, perper_check)`` with one SQL index ``(perper_bucket, field)`` per field:
  one row per item, written in the transaction that writes its segment
  (perper/store/index.py). Format 4 had the same tables without the bucket and the
  check; a format 3 or 4 file is upgraded in place when opened for writing.
* ``runs``, ``executions``, ``checkpoints``, ``leases`` — metadata, ``(key, version,
  value)`` with ``value`` msgpack; ``version`` backs compare-and-set.

The file is in WAL mode with ``synchronous=NORMAL``: a commit survives the process being
killed (kill -9), and the file stays consistent on power loss. ``PRAGMA application_id``
marks perper logs and ``PRAGMA user_version`` holds the format number, checked on open.

Calls run on the event loop's thread (no thread pool): SQLite answers these small
statements in microseconds, and the runtime must not start threads. Running the WAL
checkpoints or the commits in the loop's executor instead was measured and not adopted
(docs/architecture.md, the per-item pipeline). Other processes are noticed by polling
with backoff in :meth:`LogStore.wait`.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from perper import codec
from perper.errors import (
    FencedError,
    FormatError,
    HeadMovedError,
    SealedError,
    StoreError,
    StoreUnavailableError,
)
from perper.store.base import (
    META_TABLES,
    KeyIndex,
    LogStore,
    Meta,
    MetaWrite,
    QueryRow,
    SegmentWrite,
    StreamInfo,
    check_keys,
    check_table,
    encode_segment,
    plan_keyed,
    segment_items,
    stored_keys,
    unpack_meta,
)
from perper.store.index import (
    IndexSpec,
    decode_spec,
    encode_spec,
    sqlite_create,
    sqlite_delete_rows,
    sqlite_insert,
    sqlite_rows,
    sqlite_select,
    sqlite_table,
)

#: The on-disk format this perper reads and writes.
FORMAT_VERSION = 5
#: Older formats ``python -m perper.store.migrate`` converts (perper/store/migrate.py).
_MIGRATABLE = (2,)
#: Older formats opened as they are: format 3 lacks only ``stream_indexes``, format 4 has
#: index tables of the unbucketed layout; opening either for writing upgrades it in place
#: (:func:`upgrade_in_place`). A read-only open reads format 3 as a file without indexed
#: streams, and queries format 4's index tables as they are.
_UPGRADABLE = (3, 4)
#: ``PRAGMA application_id`` of perper logs: "PRPR".
APPLICATION_ID = 0x50525052

#: Format 4: the declarations of indexed streams. Each indexed stream's rows live in a
#: table ``stream_index_{stream_id}`` (perper/store/index.py), written in the transaction
#: that writes the segment holding the items.
_INDEX_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS stream_indexes (stream_id INTEGER PRIMARY KEY REFERENCES "
    "streams(id), fields TEXT NOT NULL)"
)

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    head INTEGER NOT NULL DEFAULT 0,
    sealed INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS segments (
    stream_id INTEGER NOT NULL REFERENCES streams(id),
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream_id, first_seq)
);
"""
    + "".join(
        f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, version INTEGER NOT NULL, "
        "value BLOB NOT NULL);\n"
        for table in META_TABLES
    )
    + _INDEX_SCHEMA
    + ";\n"
)

_KEYS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS segment_keys (stream_id INTEGER NOT NULL REFERENCES "
    "streams(id), first_seq INTEGER NOT NULL, keys BLOB NOT NULL, "
    "PRIMARY KEY (stream_id, first_seq))"
)

#: The first seq each trimmed stream still holds (retention="ephemeral"). Created by the
#: first trim, like segment_keys; a file without it has trimmed nothing.
_TRIMS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS stream_trims (stream_id INTEGER PRIMARY KEY REFERENCES "
    "streams(id), first_seq INTEGER NOT NULL)"
)

_SQLITE_HEADER = b"SQLite format 3\x00"
_FAR = 2**62
#: The page size of a new log file: SQLite's default, 4096. 16 KiB pages were tried:
#: a big segment then spans a quarter as many overflow pages (the batch pipeline makes a
#: third of the write calls), but every small commit writes 16 KiB frames, and sequential
#: calls ran at half the rate (3,334 vs 6,250 calls/s, bench/calls.py) and keyed sends
#: about 35% slower, for no batch gain above the noise. Files made with another page
#: size keep theirs.
PAGE_SIZE = 4096
#: WAL size at which a writer copies it back into the database (SQLite's default bound,
#: 1,000 pages of 4 KiB), so the WAL a log keeps does not grow with its page size.
WAL_CHECKPOINT_BYTES = 4096 * 1000


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process switches the same
    new file: the switch takes an exclusive lock, and SQLite answers two connections
    asking for it at once with "database is locked" at once, without waiting
    (busy_timeout does not apply). A file already in WAL mode switches without a lock.
    This is the store's own open path, never the runtime's: it waits with real sleeps,
    as SQLite's busy handler does, for at most about 10 s."""
    for attempt in range(_WAL_SWITCH_ATTEMPTS):
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == _WAL_SWITCH_ATTEMPTS - 1:
                raise
            time.sleep(0.005)


_WAL_SWITCH_ATTEMPTS = 2000

# A file's perper header, read in one statement (one snapshot): application id, format
# version, and whether it has any table yet.
_HEADER = (
    "SELECT a.application_id, v.user_version, (SELECT count(*) FROM sqlite_master) "
    "FROM pragma_application_id AS a, pragma_user_version AS v"
)


#: How much of the file a connection maps into memory once it has run a query (see
#: :meth:`SQLiteStore.query_rows`): 256 MiB, the rest is read as before.
QUERY_MMAP_BYTES = 256 * 1024 * 1024


def upgrade_in_place(db: sqlite3.Connection, version: int) -> None:
    """Move an open file of an upgradable format to :data:`FORMAT_VERSION` in one
    transaction. Format 3 -> 4: add ``stream_indexes``. Format 4 -> 5: rebuild each
    indexed stream's table in the bucketed layout (:func:`perper.store.index.sqlite_create`)
    from its stored segments, whose checksums are checked; nothing else changes.

    Raises:
        FormatError: a segment of an indexed stream is corrupt (nothing is changed).
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        current = db.execute("PRAGMA user_version").fetchone()[0]
        if current == version:
            if current == 3:
                db.execute(_INDEX_SCHEMA)
            else:
                declared = db.execute(
                    "SELECT i.stream_id, s.name, i.fields FROM stream_indexes AS i "
                    "JOIN streams AS s ON s.id = i.stream_id ORDER BY i.stream_id"
                ).fetchall()
                for stream_id, name, fields in declared:
                    table = sqlite_table(stream_id)
                    db.execute(f"DROP TABLE IF EXISTS {table}")
                    spec = decode_spec(fields, where=f"stream {name!r}")
                    sqlite_create(db, table, spec)
                    _fill_index(db, table, spec, name, stream_id)
            db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        db.execute("COMMIT")
    finally:
        if db.in_transaction:
            db.execute("ROLLBACK")


def _fill_index(
    db: sqlite3.Connection, table: str, spec: IndexSpec, stream: str, stream_id: int
) -> None:
    """Inside a write transaction: index every stored segment of ``stream_id`` into
    ``table`` (a declaration's back-fill, an upgrade from format 4).

    Raises:
        FormatError: a segment does not match its checksum.
    """
    stored = db.execute(
        "SELECT first_seq, data FROM segments WHERE stream_id = ? ORDER BY first_seq",
        (stream_id,),
    ).fetchall()
    for first, data in stored:
        sqlite_insert(db, table, spec, sqlite_rows(spec, stream, first, data, segment_items(data)))


class SQLiteStore(LogStore):
    """A :class:`LogStore` in one SQLite file.

    Args:
        path: the database file; its folder is created if needed.
        url: the URL it was opened with (for messages).
        read_only: open an existing log without ever writing to it or beside it: a log
            closed cleanly (no ``-wal`` file) is opened ``immutable`` (no locks, no
            ``-shm``/``-wal`` files), one whose ``-wal`` exists ``mode=ro`` so the items
            still in the WAL are read too. Writes raise :class:`StoreError`.
    """

    _poll_interval_min = 0.001
    _poll_interval_max = 0.1

    def __init__(
        self, path: str | os.PathLike[str], *, url: str | None = None, read_only: bool = False
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self.read_only = read_only
        self._ids: dict[str, int] = {}
        self._has_keys = False
        self._trims_made = False  # this connection created (or saw) stream_trims
        self._key_index: dict[str, KeyIndex] = {}
        # Per stream, the head this connection's last append_keyed committed (a guess:
        # the statement that moves the head checks it).
        self._heads: dict[str, int] = {}
        # write_group calls waiting for the next group commit (see _commit_groups).
        self._groups: list[
            tuple[Sequence[SegmentWrite], Sequence[MetaWrite], asyncio.Future[bool]]
        ] = []
        self._specs: dict[str, IndexSpec] = {}
        self._format = FORMAT_VERSION  # what the file holds once opened (_open sets it)
        self._mapped = False  # the connection reads through mmap (set by the first query)
        # The segments append last encoded for an indexed stream, with their items.
        self._encoded: list[tuple[bytes, list[Any]]] = []
        self._db = self._open()
        # One row holds one segment: SQLite's largest value, less room for the checksum
        # and the array header.
        self.max_item_bytes = self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) - 64

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if path.exists() and path.is_dir():
            raise StoreUnavailableError(f"{self.url}: {path} is a folder, not a SQLite file")
        if path.exists() and path.stat().st_size > 0:
            try:
                with path.open("rb") as f:
                    header = f.read(len(_SQLITE_HEADER))
            except OSError as error:
                raise StoreUnavailableError(
                    f"{self.url}: cannot read {path}: {error.strerror or error}; check its "
                    "permissions"
                ) from error
            if header != _SQLITE_HEADER:
                raise FormatError(
                    f"{self.url}: {path} is not a SQLite database (corrupt, or another kind of "
                    "file); point --store at a perper log or at a new file"
                )
        elif self.read_only and path.exists():
            raise FormatError(f"{self.url}: {path} is an empty file, not a perper log")
        elif self.read_only:
            raise StoreUnavailableError(f"{self.url}: {path} does not exist")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailableError(
                    f"{self.url}: cannot create {path.parent}: {error}"
                ) from error
        try:
            if self.read_only:
                wal = path.with_name(path.name + "-wal")
                mode = "mode=ro" if wal.exists() else "immutable=1"
                db = sqlite3.connect(
                    f"file:{quote(str(path.resolve()))}?{mode}",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreUnavailableError(f"{self.url}: cannot open {path}: {error}") from error
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            # One statement, so one snapshot: another process creating the file between
            # separate reads made a new log look like "not a perper log".
            app_id, version, tables = db.execute(_HEADER).fetchone()
            if app_id == 0 and tables == 0 and not self.read_only:
                # Before anything is written (a file's page size is fixed once it has
                # content): see PAGE_SIZE.
                # The schema is written in SQLite's rollback mode, under a write lock that
                # waits (busy_timeout) for another process creating the file; the switch
                # to WAL below comes after it.
                db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                db.execute("BEGIN IMMEDIATE")
                # Under the write lock: another process may have created it meanwhile.
                app_id, version, tables = db.execute(_HEADER).fetchone()
                if app_id == 0 and tables == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                    app_id, version = APPLICATION_ID, FORMAT_VERSION
                db.execute("COMMIT")
            if app_id != APPLICATION_ID:
                raise FormatError(
                    f"{self.url}: {path} is a SQLite database but not a perper log "
                    f"(application_id {app_id:#x}); point --store at a perper log or a new file"
                )
            elif version in _UPGRADABLE and not self.read_only:
                upgrade_in_place(db, version)
            elif version in _UPGRADABLE:
                self._format = version
            elif version != FORMAT_VERSION and version not in _UPGRADABLE:
                hint = (
                    f"migrate it into a new file: python -m perper.store.migrate {path} NEW.db"
                    if version in _MIGRATABLE
                    else "open it with the perper version that wrote it, or export it into a "
                    "new file with that version"
                )
                raise FormatError(
                    f"{self.url}: {path} has perper format {version}, this perper reads format "
                    f"{FORMAT_VERSION}; {hint}"
                )
            if not self.read_only:
                _switch_to_wal(db)
                db.execute("PRAGMA synchronous = NORMAL")
                # SQLite's auto-checkpoint counts pages: keep the WAL bound in bytes
                # whatever the file's page size (1,000 pages of 4 KiB, SQLite's default).
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA wal_autocheckpoint = {max(1, WAL_CHECKPOINT_BYTES // page)}")
            db.execute("SELECT count(*) FROM streams").fetchone()
        except sqlite3.DatabaseError as error:
            db.close()
            if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                raise StoreUnavailableError(
                    f"{self.url}: {path} is locked by another process ({error}); try again "
                    "once it has opened the file"
                ) from error
            raise FormatError(
                f"{self.url}: {path} cannot be read as a perper log ({error}); it is corrupt "
                "or not a perper log"
            ) from error
        except BaseException:
            db.close()
            raise
        return db

    def _translate(self) -> _Translation:
        """``with self._translate() as db:`` — the connection, with SQLite's errors raised
        as store errors (a class, not @contextmanager: a keyed send round pays it once)."""
        self._check_open()
        return _Translation(self)

    # --------------------------------------------------------------- primitives

    async def info(self, stream: str) -> StreamInfo:
        with self._translate() as db:
            row = db.execute(
                "SELECT head, sealed, epoch FROM streams WHERE name = ?", (stream,)
            ).fetchone()
        if row is None:
            return StreamInfo(stream, 0, False)
        return StreamInfo(stream, row[0], bool(row[1]), row[2])

    def _stream_id(self, db: sqlite3.Connection, stream: str, *, create: bool) -> int | None:
        """The row id of ``stream``, creating its row if ``create``.

        A row created here is only remembered once its transaction commits
        (:meth:`_remember_id`): a rolled-back creation must not leave an id that no row has.
        """
        stream_id = self._ids.get(stream)
        if stream_id is None:
            if create:
                db.execute("INSERT OR IGNORE INTO streams (name) VALUES (?)", (stream,))
            row = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
            if row is None:
                return None
            stream_id = row[0]
            if not create:
                self._ids[stream] = stream_id
        return stream_id

    def _remember_id(self, stream: str, stream_id: int | None) -> None:
        if stream_id is not None:
            self._ids[stream] = stream_id

    async def scan_segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        with self._translate() as db:
            stream_id = self._stream_id(db, stream, create=False)
            if stream_id is None:
                return
            high = _FAR if stop is None else stop
            # One statement: from the segment holding ``start`` (the last one starting
            # at or before it) on.
            rows = db.execute(
                "SELECT first_seq, count, data FROM segments WHERE stream_id = ?1 "
                "AND first_seq >= coalesce((SELECT max(first_seq) FROM segments "
                "WHERE stream_id = ?1 AND first_seq <= ?2), 0) "
                "AND first_seq < ?3 ORDER BY first_seq LIMIT 128",
                (stream_id, start, high),
            ).fetchall()
        while True:
            for first, count, data in rows:
                if first + count > start:
                    yield first, count, data
            if len(rows) < 128:
                return
            low = rows[-1][0] + 1
            with self._translate() as db:
                rows = db.execute(
                    "SELECT first_seq, count, data FROM segments WHERE stream_id = ? "
                    "AND first_seq >= ? AND first_seq < ? ORDER BY first_seq LIMIT 128",
                    (stream_id, low, high),
                ).fetchall()

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        with self._translate() as db:
            db.execute("BEGIN IMMEDIATE")
            stream_id = self._stream_id(db, stream, create=True)
            moved = db.execute(
                "UPDATE streams SET head = ?, epoch = ? "
                "WHERE id = ? AND head = ? AND sealed = 0 AND epoch <= ?",
                (seq + count, epoch, stream_id, seq, epoch),
            ).rowcount
            if moved != 1:
                db.execute("ROLLBACK")
                raise HeadMovedError(stream)
            try:
                self._index_segment(db, stream, stream_id, seq, data)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute(
                "INSERT INTO segments (stream_id, first_seq, count, data) VALUES (?, ?, ?, ?)",
                (stream_id, seq, count, data),
            )
            db.execute("COMMIT")
        self._remember_id(stream, stream_id)

    async def write_seal(self, stream: str, epoch: int) -> bool:
        with self._translate() as db:
            db.execute("BEGIN IMMEDIATE")
            stream_id = self._stream_id(db, stream, create=True)
            sealed = db.execute(
                "UPDATE streams SET sealed = 1, epoch = ? WHERE id = ? AND epoch <= ?",
                (epoch, stream_id, epoch),
            ).rowcount
            db.execute("COMMIT")
        self._remember_id(stream, stream_id)
        return sealed == 1

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        with self._translate() as db:
            rows = db.execute(
                "SELECT name, head, sealed, epoch FROM streams WHERE substr(name, 1, ?) = ? "
                "ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        return [StreamInfo(name, head, bool(sealed), epoch) for name, head, sealed, epoch in rows]

    async def meta_get(self, table: str, key: str) -> Meta | None:
        check_table(table)
        with self._translate() as db:
            row = db.execute(f"SELECT version, value FROM {table} WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return Meta(row[0], unpack_meta(row[1], table=table, key=key, where=self.url))

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        check_table(table)
        data = codec.pack(value, what="metadata")
        with self._translate() as db:
            if version == 0:
                changed = db.execute(
                    f"INSERT OR IGNORE INTO {table} (key, version, value) VALUES (?, 1, ?)",
                    (key, data),
                ).rowcount
            else:
                changed = db.execute(
                    f"UPDATE {table} SET version = ?, value = ? WHERE key = ? AND version = ?",
                    (version + 1, data, key, version),
                ).rowcount
        return version + 1 if changed == 1 else None

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        check_table(table)
        with self._translate() as db:
            rows = db.execute(
                f"SELECT key, version, value FROM {table} WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
        return [
            (key, Meta(version, unpack_meta(value, table=table, key=key, where=self.url)))
            for key, version, value in rows
        ]

    # ------------------------------------------------------------- group commit

    async def write_group(
        self, segments: Sequence[SegmentWrite], metas: Sequence[MetaWrite] = ()
    ) -> bool:
        """One transaction per group, and one commit for the groups of every caller that
        asks before the event loop's next turn: each group is a savepoint of it, undone
        alone if one of its writes is refused. Many concurrent calls finishing cost one
        commit (one WAL write) instead of one each."""
        self._check_open()
        if self.read_only:
            raise StoreError(f"{self.url}: opened read-only; cannot write")
        for meta in metas:
            check_table(meta.table)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._groups.append((segments, metas, future))
        if len(self._groups) == 1:
            loop.call_soon(self._commit_groups)
        return await future

    def _commit_groups(self) -> None:
        groups, self._groups = self._groups, []
        results: list[bool] = []
        created: list[tuple[str, int]] = []
        try:
            with self._translate() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    # Optimistic first: every group is written, no savepoints (two
                    # statements less per group). Only if one is refused is the whole
                    # transaction undone and done again, one savepoint per group.
                    for segments, metas, _ in groups:
                        if not self._write_group(db, segments, metas, created):
                            break
                    else:
                        results = [True] * len(groups)
                    if not results:
                        db.execute("ROLLBACK")
                        created.clear()
                        db.execute("BEGIN IMMEDIATE")
                        for segments, metas, _ in groups:
                            db.execute("SAVEPOINT perper_group")
                            made: list[tuple[str, int]] = []
                            written = self._write_group(db, segments, metas, made)
                            if not written:
                                db.execute("ROLLBACK TO perper_group")
                            db.execute("RELEASE perper_group")
                            results.append(written)
                            if written:
                                created.extend(made)
                    db.execute("COMMIT")
                finally:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
        except BaseException as error:
            for _, _, future in groups:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        for stream, stream_id in created:
            self._ids[stream] = stream_id
        for (segments, _, future), written in zip(groups, results, strict=True):
            if written:
                for segment in segments:
                    self.notify(segment.stream)
            if not future.done():
                future.set_result(written)

    def _write_group(
        self,
        db: sqlite3.Connection,
        segments: Sequence[SegmentWrite],
        metas: Sequence[MetaWrite],
        made: list[tuple[str, int]],
    ) -> bool:
        for segment in segments:
            stream, seq, count, epoch = segment.stream, segment.seq, segment.count, segment.epoch
            stream_id = self._ids.get(stream)
            if stream_id is None and seq == 0:
                # A new stream (a call's outcome, usually): its row is born at its head.
                cursor = db.execute(
                    "INSERT OR IGNORE INTO streams (name, head, sealed, epoch) VALUES (?, ?, ?, ?)",
                    (stream, count, int(segment.seal), epoch),
                )
                if cursor.rowcount == 1:
                    stream_id = cursor.lastrowid
                    assert stream_id is not None
                    made.append((stream, stream_id))
                    db.execute(
                        "INSERT INTO segments (stream_id, first_seq, count, data) "
                        "VALUES (?, ?, ?, ?)",
                        (stream_id, seq, count, segment.data),
                    )
                    continue
            stream_id = self._stream_id(db, stream, create=True)
            assert stream_id is not None
            made.append((stream, stream_id))
            moved = db.execute(
                "UPDATE streams SET head = ?, epoch = ?, sealed = ? "
                "WHERE id = ? AND head = ? AND sealed = 0 AND epoch <= ?",
                (seq + count, epoch, int(segment.seal), stream_id, seq, epoch),
            ).rowcount
            if moved != 1:
                return False
            db.execute(
                "INSERT INTO segments (stream_id, first_seq, count, data) VALUES (?, ?, ?, ?)",
                (stream_id, seq, count, segment.data),
            )
        for meta in metas:
            data = codec.pack(meta.value, what="metadata")
            if meta.version == 0:
                changed = db.execute(
                    f"INSERT OR IGNORE INTO {meta.table} (key, version, value) VALUES (?, 1, ?)",
                    (meta.key, data),
                ).rowcount
            else:
                changed = db.execute(
                    f"UPDATE {meta.table} SET version = ?, value = ? WHERE key = ? AND version = ?",
                    (meta.version + 1, data, meta.key, meta.version),
                ).rowcount
            if changed != 1:
                return False
        return True

    # ------------------------------------------------------------ keyed appends

    def _keys_table(self, db: sqlite3.Connection, *, create: bool) -> bool:
        if not self._has_keys:
            if create and not self.read_only:
                db.execute(_KEYS_SCHEMA)
            self._has_keys = (
                db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'segment_keys'"
                ).fetchone()[0]
                == 1
            )
        return self._has_keys

    def _caught_up(
        self, db: sqlite3.Connection, stream: str, stream_id: int, head: int
    ) -> KeyIndex:
        """The stream's key index, with the keys of every segment below ``head``."""
        index = self._key_index.get(stream)
        if index is None:
            index = self._key_index[stream] = KeyIndex()
        if index.through < head and self._keys_table(db, create=False):
            # With its segment's count: keys that do not name one item each are corrupt,
            # never keys to trust (a short list would let the items after it be resent).
            for first, keys, count in db.execute(
                "SELECT k.first_seq, k.keys, s.count FROM segment_keys k LEFT JOIN segments s "
                "ON s.stream_id = k.stream_id AND s.first_seq = k.first_seq "
                "WHERE k.stream_id = ? AND k.first_seq >= ? AND k.first_seq < ? "
                "ORDER BY k.first_seq",
                (stream_id, index.through, head),
            ):
                where = f"{self.url}: stream {stream!r}, segment at seq {first}"
                index.absorb_stored(first, stored_keys(keys, count, where=where), where=where)
        index.through = max(index.through, head)
        return index

    async def lookup_keys(self, stream: str, keys: Sequence[str]) -> dict[str, int]:
        with self._translate() as db:
            row = db.execute("SELECT id, head FROM streams WHERE name = ?", (stream,)).fetchone()
            if row is None:
                return {}
            # The head first: the keys of every segment below it were committed with it.
            seqs = self._caught_up(db, stream, row[0], row[1]).seqs
        return {key: seqs[key] for key in keys if key in seqs}

    async def segment_keys(
        self, stream: str, start: int = 0, stop: int | None = None
    ) -> list[tuple[int, list[str | None]]]:
        with self._translate() as db:
            stream_id = self._stream_id(db, stream, create=False)
            if stream_id is None or not self._keys_table(db, create=False):
                return []
            # From the segment holding ``start`` (its keys row has its first seq).
            low = db.execute(
                "SELECT max(first_seq) FROM segments WHERE stream_id = ? AND first_seq <= ?",
                (stream_id, start),
            ).fetchone()[0]
            rows = db.execute(
                "SELECT k.first_seq, k.keys, s.count FROM segment_keys k JOIN segments s "
                "ON s.stream_id = k.stream_id AND s.first_seq = k.first_seq "
                "WHERE k.stream_id = ? AND k.first_seq >= ? AND k.first_seq < ? "
                "ORDER BY k.first_seq",
                (stream_id, low or 0, _FAR if stop is None else stop),
            ).fetchall()
        found = []
        for first, packed, count in rows:
            if first + count <= start:
                continue
            where = f"{self.url}: stream {stream!r}, segment at seq {first}"
            found.append((first, stored_keys(packed, count, where=where)))
        return found

    async def write_keyed_segment(
        self, stream: str, seq: int, count: int, data: bytes, keys: Sequence[str | None] | None
    ) -> None:
        with self._translate() as db:
            self._keys_table(db, create=True)
            db.execute("BEGIN IMMEDIATE")
            try:
                stream_id = self._stream_id(db, stream, create=True)
                if not self._moved(db, stream, stream_id, seq, count, data, keys):
                    raise HeadMovedError(stream)
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                    self._ids.pop(stream, None)  # its row may have been created and undone
        self._remember_id(stream, stream_id)

    def _moved(
        self,
        db: sqlite3.Connection,
        stream: str,
        stream_id: int | None,
        seq: int,
        count: int,
        data: bytes,
        keys: Sequence[str | None] | None,
    ) -> bool:
        """Inside a write transaction: move the head from ``seq`` by ``count`` and write the
        segment (with its index rows and keys), or return False if the head is not at
        ``seq`` (or the stream is sealed or fenced). One statement moves the head and reads
        the stream's index declaration, so a declaration another process committed is
        honoured."""
        row = db.execute(
            "UPDATE streams SET head = ? WHERE id = ? AND head = ? AND sealed = 0 AND epoch = 0 "
            "RETURNING (SELECT fields FROM stream_indexes WHERE stream_id = streams.id)",
            (seq + count, stream_id, seq),
        ).fetchone()
        if row is None:
            return False
        if row[0] is not None:
            self._index_segment(db, stream, stream_id, seq, data, row[0])
        db.execute(
            "INSERT INTO segments (stream_id, first_seq, count, data) VALUES (?, ?, ?, ?)",
            (stream_id, seq, count, data),
        )
        if keys is not None:
            db.execute(
                "INSERT INTO segment_keys (stream_id, first_seq, keys) VALUES (?, ?, ?)",
                (stream_id, seq, codec.pack(keys, what="keys")),
            )
        return True

    async def append_keyed(
        self, stream: str, items: Sequence[Any], keys: Sequence[str | None] | None
    ) -> list[int]:
        """See :meth:`LogStore.append_keyed`: here one ``BEGIN IMMEDIATE`` transaction
        catches up on the keys other processes stored, plans against them and writes the
        segment with its keys, so producers in other processes queue on the file's write
        lock instead of retrying.

        The plan is first made at the head this connection's last keyed append left (and
        with the keys it knew then): if the head is still there, the statement that moves
        it is the only read; if another writer moved it, the transaction reads the head,
        catches up and plans again. In the usual case (every key new) the key index takes
        the keys in before the write (:meth:`KeyIndex.place`, one probe per key) and
        gives them back if the write fails or the head moved."""
        items, keys = check_keys(stream, items, keys)
        with self._translate() as db:
            if keys is not None:
                self._keys_table(db, create=True)
            db.execute("BEGIN IMMEDIATE")
            placed = None  # the key index holding this append's keys before they are stored
            try:
                stream_id = self._stream_id(db, stream, create=True)
                assert stream_id is not None
                index = None
                head = self._heads.get(stream)
                if keys is not None and head is not None:
                    index = self._key_index.get(stream)
                    if index is None or index.through != head:
                        head = None
                if head is not None:
                    seqs, fresh, fresh_keys = list(range(head, head + len(items))), items, keys
                    if index is not None and keys is not None:
                        if index.place(keys, seqs):
                            placed = index
                        else:
                            seqs, fresh, fresh_keys = plan_keyed(head, items, keys, index.seqs)
                    if fresh and not self._moved(
                        db, stream, stream_id, head, len(fresh), encode_segment(fresh), fresh_keys
                    ):
                        # Another writer moved the head (or sealed or fenced the stream).
                        if placed is not None:
                            placed.unplace(fresh_keys, head)  # type: ignore[arg-type]
                            placed = None
                        head = None
                if head is None:
                    head, sealed, epoch = db.execute(
                        "SELECT head, sealed, epoch FROM streams WHERE id = ?", (stream_id,)
                    ).fetchone()
                    if keys is None:
                        seqs, fresh, fresh_keys = list(range(head, head + len(items))), items, None
                    else:
                        index = self._caught_up(db, stream, stream_id, head)
                        seqs, fresh, fresh_keys = plan_keyed(head, items, keys, index.seqs)
                    if fresh:
                        if sealed:
                            raise SealedError(stream, head, head)
                        if epoch > 0:
                            raise FencedError(stream, 0, epoch)
                        data = encode_segment(fresh)
                        self._moved(db, stream, stream_id, head, len(fresh), data, fresh_keys)
                db.execute("COMMIT")
            except BaseException:
                if placed is not None:  # not stored: the index must not hold them
                    placed.unplace(fresh_keys, head)  # type: ignore[arg-type]
                raise
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                    self._ids.pop(stream, None)  # its row may have been created and undone
                    self._heads.pop(stream, None)
        self._remember_id(stream, stream_id)
        self._heads[stream] = head + len(fresh)
        if fresh:
            if index is not None and fresh_keys is not None:
                if placed is None:
                    index.absorb_fresh(head, fresh_keys)
                index.through = head + len(fresh)
            self.notify(stream)
        return seqs

    # ---------------------------------------------------------------- retention
    # One transaction records the new first seq and deletes the segments below it and
    # their index rows, so a crash leaves either the old stream or the trimmed one.

    def _has_trims(self, db: sqlite3.Connection) -> bool:
        query = "SELECT count(*) FROM sqlite_master WHERE name = 'stream_trims'"
        return bool(db.execute(query).fetchone()[0] == 1)

    def _indexed(self, db: sqlite3.Connection, stream_id: int) -> bool:
        # Inside the trim's or delete's transaction: whether the stream has index rows.
        if not self._has_indexes(db):
            return False
        query = "SELECT count(*) FROM stream_indexes WHERE stream_id = ?"
        return bool(db.execute(query, (stream_id,)).fetchone()[0])

    async def first_seq(self, stream: str) -> int:
        with self._translate() as db:
            if not self._has_trims(db):
                return 0
            row = db.execute(
                "SELECT t.first_seq, s.head FROM stream_trims t JOIN streams s "
                "ON s.id = t.stream_id WHERE s.name = ?",
                (stream,),
            ).fetchone()
        if row is None:
            return 0
        if not 0 <= row[0] <= row[1]:
            # A trim keeps the head and deletes below it only: a first seq past the head
            # (or below 0) was never written by one.
            raise FormatError(
                f"{self.url}: stream {stream!r} records its first kept seq as {row[0]} but "
                f"its head is {row[1]}: the log is corrupt"
            )
        return int(row[0])

    async def trim(self, stream: str, before_seq: int) -> int:
        if self.read_only:
            raise StoreError(f"{self.url} is open read-only; refusing to trim {stream!r}")
        with self._translate() as db:
            if not self._trims_made:
                db.execute(_TRIMS_SCHEMA)
                self._trims_made = True
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
                if row is None:
                    db.execute("ROLLBACK")
                    return 0
                stream_id = row[0]
                found = db.execute(
                    "SELECT first_seq FROM stream_trims WHERE stream_id = ?", (stream_id,)
                ).fetchone()
                first = 0 if found is None else int(found[0])
                end = db.execute(
                    "SELECT max(first_seq + count) FROM segments WHERE stream_id = ? "
                    "AND first_seq + count <= ?",
                    (stream_id, before_seq),
                ).fetchone()[0]
                if end is None or end <= first:
                    db.execute("ROLLBACK")
                    return first
                db.execute(
                    "INSERT INTO stream_trims (stream_id, first_seq) VALUES (?, ?) "
                    "ON CONFLICT (stream_id) DO UPDATE SET first_seq = excluded.first_seq",
                    (stream_id, end),
                )
                db.execute(
                    "DELETE FROM segments WHERE stream_id = ? AND first_seq < ?",
                    (stream_id, end),
                )
                if self._indexed(db, stream_id):
                    sqlite_delete_rows(db, sqlite_table(stream_id), below=end)
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        if self._compared is not None and self._compared[0] == stream:
            self._compared = None
        return int(end)

    async def delete_stream(self, stream: str) -> None:
        if self.read_only:
            raise StoreError(f"{self.url} is open read-only; refusing to delete {stream!r}")
        with self._translate() as db:
            has_keys = self._keys_table(db, create=False)
            has_trims = self._has_trims(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT id FROM streams WHERE name = ?", (stream,)).fetchone()
                if row is not None:
                    stream_id = row[0]
                    db.execute("DELETE FROM segments WHERE stream_id = ?", (stream_id,))
                    if has_keys:
                        db.execute("DELETE FROM segment_keys WHERE stream_id = ?", (stream_id,))
                    if has_trims:
                        db.execute("DELETE FROM stream_trims WHERE stream_id = ?", (stream_id,))
                    if self._indexed(db, stream_id):
                        sqlite_delete_rows(db, sqlite_table(stream_id))
                        db.execute("DELETE FROM stream_indexes WHERE stream_id = ?", (stream_id,))
                    db.execute("DELETE FROM streams WHERE id = ?", (stream_id,))
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
        self._ids.pop(stream, None)
        self._key_index.pop(stream, None)
        self._heads.pop(stream, None)
        self._specs.pop(stream, None)
        if self._compared is not None and self._compared[0] == stream:
            self._compared = None
        self.notify(stream)

    # ---------------------------------------------------------- indexed streams

    def _has_indexes(self, db: sqlite3.Connection) -> bool:
        # A format 3 file opened read-only has no stream_indexes table.
        return bool(
            db.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'stream_indexes'"
            ).fetchone()[0]
        )

    def _spec_of(
        self, db: sqlite3.Connection, stream: str, stream_id: int | None
    ) -> IndexSpec | None:
        spec = self._specs.get(stream)
        if spec is None and stream_id is not None and (not self.read_only or self._has_indexes(db)):
            row = db.execute(
                "SELECT fields FROM stream_indexes WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            if row is not None:
                spec = self._specs[stream] = decode_spec(row[0], where=self.url)
        return spec

    def _index_segment(
        self,
        db: sqlite3.Connection,
        stream: str,
        stream_id: int | None,
        seq: int,
        data: bytes,
        fields: str | None = None,
    ) -> None:
        """Inside a write transaction: the index rows of the segment ``data`` at ``seq``,
        if the stream is indexed (looked up in the transaction, so a declaration another
        process committed is honoured; ``fields``: the declaration, already read in it)."""
        spec = self._specs.get(stream)
        if spec is None and fields is not None:
            spec = self._specs[stream] = decode_spec(fields, where=self.url)
        elif spec is None:
            spec = self._spec_of(db, stream, stream_id)
        if spec is None:
            return
        assert stream_id is not None
        items = next((chunk for known, chunk in self._encoded if known is data), None)
        if items is None:
            items = segment_items(data)
        rows = sqlite_rows(spec, stream, seq, data, items)
        sqlite_insert(db, sqlite_table(stream_id), spec, rows)

    def _chunks(self, stream: str, seq: int, items: list[Any]) -> list[tuple[list[Any], bytes]]:
        """As :meth:`LogStore._chunks`; for an indexed stream, the chunks are also kept so
        that :meth:`write_segment` indexes each segment from the items it was just encoded
        from (found by the identity of its bytes) instead of decoding it again."""
        chunks = super()._chunks(stream, seq, items)
        self._encoded = [(data, chunk) for chunk, data in chunks] if stream in self._specs else []
        return chunks

    async def index_of(self, stream: str) -> IndexSpec | None:
        with self._translate() as db:
            return self._spec_of(db, stream, self._stream_id(db, stream, create=False))

    async def indexes(self, *, prefix: str = "") -> dict[str, IndexSpec]:
        with self._translate() as db:
            if self.read_only and not self._has_indexes(db):
                return {}
            rows = db.execute(
                "SELECT name, fields FROM streams JOIN stream_indexes ON id = stream_id "
                "WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        return {name: decode_spec(fields, where=self.url) for name, fields in rows}

    async def write_index(self, stream: str, spec: IndexSpec) -> IndexSpec:
        if self.read_only:
            raise StoreError(f"{self.url} is open read-only; refusing to index {stream!r}")
        with self._translate() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                stream_id = self._stream_id(db, stream, create=True)
                assert stream_id is not None
                row = db.execute(
                    "SELECT fields FROM stream_indexes WHERE stream_id = ?", (stream_id,)
                ).fetchone()
                if row is not None:
                    db.execute("ROLLBACK")
                    return decode_spec(row[0], where=self.url)
                table = sqlite_table(stream_id)
                sqlite_create(db, table, spec)
                _fill_index(db, table, spec, stream, stream_id)
                db.execute(
                    "INSERT INTO stream_indexes (stream_id, fields) VALUES (?, ?)",
                    (stream_id, encode_spec(spec)),
                )
                db.execute("COMMIT")
            finally:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                    self._ids.pop(stream, None)
        self._remember_id(stream, stream_id)
        self._specs[stream] = spec
        return spec

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
        with self._translate() as db:
            stream_id = self._stream_id(db, stream, create=False)
            if stream_id is None or self._spec_of(db, stream, stream_id) is None:
                return []
            if not self._mapped:
                # A query reads a few bytes from each of many segments, each a chain of
                # overflow pages: mapped, those are read without a system call per page
                # (reads only; SQLite still writes with write()). perper never shrinks a
                # log file while it is open (no VACUUM), which mapping needs.
                db.execute(f"PRAGMA mmap_size = {QUERY_MMAP_BYTES}")
                self._mapped = True
            return sqlite_select(
                db,
                sqlite_table(stream_id),
                where,
                params,
                stop=stop,
                order_by=order_by,
                limit=limit,
                segments_of=stream_id,
                bucketed=self._format >= 5,
            )

    async def close(self) -> None:
        self._closed = True
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            self._db = None  # type: ignore[assignment]


#: SQLite's primary result codes for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB; an
#: extended code carries its primary code in its low byte): a :class:`FormatError`.
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class _Translation:
    """What :meth:`SQLiteStore._translate` returns: rolls back the transaction an error
    left open and raises SQLite's errors as :class:`StoreError` (locked, busy, I/O:
    :class:`StoreUnavailableError`; a damaged file: :class:`FormatError`)."""

    __slots__ = ("store",)

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        return self.store._db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None or not issubclass(exc_type, sqlite3.DatabaseError):
            return
        db, url = self.store._db, self.store.url
        if db.in_transaction:
            db.execute("ROLLBACK")
        if getattr(error, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
            # A damaged page met after the open's checks (a flipped byte, a bad sector).
            raise FormatError(
                f"{url}: {self.store.path} is damaged ({error}): the log is corrupt; restore "
                "it from a copy, or export what is still readable with perper export --streams"
            ) from error
        if issubclass(exc_type, sqlite3.OperationalError):
            raise StoreUnavailableError(f"{url}: {error}") from error
        raise StoreError(f"{url}: {error}") from error
