"""Opening a recorded log for replay: read-only, never modifying the file."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from perper.errors import FormatError, ReplayError, StoreUnavailableError
from perper.store import LogStore, open_store
from perper.store.sqlite import APPLICATION_ID, FORMAT_VERSION, SQLiteStore


class ReadOnlySQLiteStore(SQLiteStore):
    """A :class:`SQLiteStore` opened read-only: a replay must leave the log untouched.

    A log closed cleanly (no ``-wal`` file beside it) is opened ``immutable``: no locks,
    no ``-shm``/``-wal`` files, not one byte written next to it. A log whose ``-wal``
    file exists (its writer is running, or was killed) is opened ``mode=ro`` so the
    items still in the WAL are read too.
    """

    def _open(self) -> sqlite3.Connection:
        path = self.path
        if not path.is_file():
            raise StoreUnavailableError(f"{self.url}: {path} does not exist")
        wal = path.with_name(path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "immutable=1"
        uri = f"file:{quote(str(path.resolve()))}?{mode}"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreUnavailableError(f"{self.url}: cannot open {path}: {error}") from error
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise FormatError(
                    f"{self.url}: {path} is not a perper log (application_id {app_id:#x}); "
                    "replay a file written by perper or 'perper export'"
                )
            if version != FORMAT_VERSION:
                raise FormatError(
                    f"{self.url}: {path} has perper format {version}, this perper reads format "
                    f"{FORMAT_VERSION}; replay it with the perper version that wrote it"
                )
            db.execute("SELECT count(*) FROM streams").fetchone()
        except sqlite3.DatabaseError as error:
            db.close()
            raise FormatError(
                f"{self.url}: {path} cannot be read as a perper log ({error}); it is corrupt "
                "or not a perper log"
            ) from error
        except BaseException:
            db.close()
            raise
        return db

    # SQLite refuses writes on this connection anyway; these say why, in perper's terms.

    async def append(self, stream: str, seq: int, items: Any, **options: Any) -> int:
        raise ReplayError(f"{self.url} is open read-only for replay; refusing to write {stream!r}")

    async def seal(self, stream: str, **options: Any) -> None:
        raise ReplayError(f"{self.url} is open read-only for replay; refusing to seal {stream!r}")

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        raise ReplayError(f"{self.url} is open read-only for replay; refusing to write {key!r}")


def open_log(log: str | os.PathLike[str] | LogStore) -> tuple[LogStore, bool]:
    """Open a recorded log for reading.

    Args:
        log: a SQLite file path, a store URL (``sqlite:///path.db``, ``ignite://...``) or
            an open :class:`LogStore` (used as is, never closed here).

    Returns:
        ``(store, owned)``: ``owned`` is True when the caller must close the store.

    Raises:
        ReplayError: the log does not exist or is not a perper log.
    """
    if isinstance(log, LogStore):
        return log, False
    text = os.fspath(log)
    try:
        if "://" not in text:
            return ReadOnlySQLiteStore(Path(text), url=f"sqlite:///{text}"), True
        if text.startswith("sqlite:///"):
            return ReadOnlySQLiteStore(Path(text[len("sqlite:///"):]), url=text), True
        if text.startswith("memory://"):
            raise ReplayError(
                f"{text} is a fresh, empty store: replay a SQLite log (perper export) instead"
            )
        # Other backends: the replay only ever reads from them.
        return open_store(text), True
    except (FormatError, StoreUnavailableError) as error:
        raise ReplayError(f"cannot replay {text}: {error}") from error
