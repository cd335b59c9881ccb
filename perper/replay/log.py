"""Opening a recorded log for replay: read-only, never modifying the file."""

from __future__ import annotations

import os
from pathlib import Path

from perper.errors import FormatError, ReplayError, StoreUnavailableError
from perper.store import LogStore, open_store
from perper.store.readonly import ReadOnlyStore
from perper.store.sqlite import SQLiteStore
from perper.store.urls import sqlite_path, sqlite_url


def _read_only(store: LogStore) -> ReadOnlyStore:
    return ReadOnlyStore(store, reason="for replay")


def open_log(log: str | os.PathLike[str] | LogStore) -> tuple[LogStore, bool]:
    """Open a recorded log for reading.

    Args:
        log: a SQLite file path, a store URL (``sqlite:///path.db``, ``ignite://...``) or
            an open :class:`LogStore` (used as is, never closed here).

    Returns:
        ``(store, owned)``: ``owned`` is True when the caller must close the store; a
        store opened here is a :class:`~perper.store.readonly.ReadOnlyStore`.

    Raises:
        ReplayError: the log does not exist or is not a perper log.
    """
    if isinstance(log, LogStore):
        return log, False
    text = os.fspath(log)
    try:
        if "://" not in text:
            sqlite = SQLiteStore(Path(text), url=sqlite_url(text), read_only=True)
            return _read_only(sqlite), True
        path = sqlite_path(text)
        if path is not None:
            return _read_only(SQLiteStore(path, url=text, read_only=True)), True
        if text.startswith("memory://"):
            raise ReplayError(
                f"{text} is a fresh, empty store: replay a SQLite log (perper export) instead"
            )
        # Other backends: the same read-only view.
        return _read_only(open_store(text)), True
    except (FormatError, StoreUnavailableError) as error:
        raise ReplayError(f"cannot replay {text}: {error}") from error
