"""Migrate a SQLite log of an older format into a new file of the current format (5).

Format 4 -> 5 rebuilds each indexed stream's index table in the bucketed layout (SQL
indexes led by ``seq >> 12``, a CRC-32 per item; perper/store/index.py) from its stored
segments, checking their checksums. Format 3 -> 5 adds the ``stream_indexes`` table
(indexed streams; a format 3 file has none to rebuild). Both copy the file with SQLite's
backup API and upgrade the copy in one transaction
(:func:`perper.store.sqlite.upgrade_in_place`); a format 3 or 4 file opened for writing is
upgraded the same way in place, since nothing else changed.

Format 2 -> 5 adds a CRC-32 to every segment. The old file is opened read-only with the
``sqlite3`` module (its segments are plain msgpack arrays), each segment's items are
checked against its count, and everything is written into a new file through
:class:`~perper.store.sqlite.SQLiteStore`: the same streams, seqs, segment boundaries,
sealed flags and epochs, and the metadata tables by value. The old file is never changed.

Command line: ``python -m perper.store.migrate OLD.db NEW.db`` (exit 0 done, 2 refused).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from perper import codec
from perper.errors import ConfigError, FormatError
from perper.store.base import META_TABLES, encode_segment
from perper.store.sqlite import (
    _MIGRATABLE,
    _UPGRADABLE,
    APPLICATION_ID,
    FORMAT_VERSION,
    SQLiteStore,
    upgrade_in_place,
)

__all__ = ["MIGRATABLE", "migrate_sqlite"]

#: Formats :func:`migrate_sqlite` reads.
MIGRATABLE = _MIGRATABLE + _UPGRADABLE


async def migrate_sqlite(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> int:
    """Write the log ``old`` (an older format) into the new file ``new`` (this format).

    Returns the number of items migrated.

    Raises:
        ConfigError: ``new`` exists already.
        FormatError: ``old`` is not a perper log of a format listed in :data:`MIGRATABLE`,
            or one of its segments is corrupt.
    """
    source, target = Path(old), Path(new)
    db, app_id, version = _open_old(source, target)
    items = 0
    try:
        if app_id != APPLICATION_ID:
            raise FormatError(f"{source} is not a perper log (application_id {app_id:#x})")
        if version == FORMAT_VERSION:
            raise FormatError(f"{source} has format {version} already: nothing to migrate")
        if version not in MIGRATABLE:
            raise FormatError(
                f"{source} has perper format {version}; this perper migrates formats "
                f"{', '.join(map(str, MIGRATABLE))} to {FORMAT_VERSION}"
            )
        if version in _UPGRADABLE:
            return _upgrade_copy(db, target, version)
        async with SQLiteStore(target) as store:
            streams = db.execute("SELECT id, name, sealed, epoch FROM streams ORDER BY name")
            for stream_id, name, sealed, epoch in streams.fetchall():
                rows = db.execute(
                    "SELECT first_seq, count, data FROM segments WHERE stream_id = ? "
                    "ORDER BY first_seq",
                    (stream_id,),
                )
                for first, count, data in rows:
                    decoded = codec.unpack_segment(data)
                    if len(decoded) != count:
                        raise FormatError(
                            f"{source}: stream {name!r}, segment at seq {first}: it holds "
                            f"{len(decoded)} items, not {count}: the log is corrupt"
                        )
                    await store.write_segment(name, first, count, encode_segment(decoded), epoch)
                    items += count
                if sealed:
                    await store.write_seal(name, epoch)
            for table in META_TABLES:
                for key, value in db.execute(f"SELECT key, value FROM {table} ORDER BY key"):
                    await store.meta_cas(table, key, codec.unpack(value), version=0)
    except BaseException:
        _remove(target)
        raise
    finally:
        db.close()
    return items


def _upgrade_copy(db: sqlite3.Connection, target: Path, version: int) -> int:
    copy = sqlite3.connect(target, isolation_level=None)
    try:
        db.backup(copy)
        upgrade_in_place(copy, version)
        items = copy.execute("SELECT coalesce(sum(count), 0) FROM segments").fetchone()[0]
    finally:
        copy.close()
    return int(items)


def _open_old(source: Path, target: Path) -> tuple[sqlite3.Connection, int, int]:
    if target.exists():
        raise ConfigError(f"{target} exists; migrate into a new file")
    uri = f"file:{quote(str(source.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise FormatError(f"{source} is not a SQLite database ({error})") from error
    return db, app_id, version


def _remove(target: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(target) + suffix).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m perper.store.migrate OLD.db NEW.db``: exit 0 done, 2 refused."""
    import argparse
    import asyncio
    import sys

    from perper.errors import PerperError

    parser = argparse.ArgumentParser(
        prog="python -m perper.store.migrate",
        description="Copy a perper SQLite log of an older format into a new file.",
    )
    parser.add_argument("old", help="the log to migrate (never changed)")
    parser.add_argument("new", help="the new file to write")
    args = parser.parse_args(argv)
    try:
        items = asyncio.run(migrate_sqlite(args.old, args.new))
    except PerperError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"migrated {items} items into {args.new}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
