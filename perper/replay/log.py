"""Opening a recorded log for replay: read-only, never modifying the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from perper.errors import FormatError, ReplayError, StoreUnavailableError
from perper.store import LogStore, open_store
from perper.store.sqlite import SQLiteStore
from perper.store.urls import sqlite_path, sqlite_url


class ReadOnlySQLiteStore(SQLiteStore):
    """A :class:`SQLiteStore` opened ``read_only``: a replay must leave the log untouched."""

    def __init__(self, path: Path, *, url: str) -> None:
        super().__init__(path, url=url, read_only=True)

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
            return ReadOnlySQLiteStore(Path(text), url=sqlite_url(text)), True
        path = sqlite_path(text)
        if path is not None:
            return ReadOnlySQLiteStore(path, url=text), True
        if text.startswith("memory://"):
            raise ReplayError(
                f"{text} is a fresh, empty store: replay a SQLite log (perper export) instead"
            )
        # Other backends: the replay only ever reads from them.
        return open_store(text), True
    except (FormatError, StoreUnavailableError) as error:
        raise ReplayError(f"cannot replay {text}: {error}") from error
