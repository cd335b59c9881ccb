"""Log stores: the contract (:mod:`perper.store.base`) and its backends."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from perper.errors import ConfigError
from perper.store.base import LogStore, Meta, StreamInfo
from perper.store.memory import MemoryStore
from perper.store.urls import mask_url, sqlite_path

#: Where ``perper`` keeps its log when neither ``--store`` nor ``$PERPER_STORE`` say.
DEFAULT_STORE_URL = "sqlite:///.perper/perper.db"

__all__ = [
    "DEFAULT_STORE_URL",
    "LogStore",
    "MemoryStore",
    "Meta",
    "StreamInfo",
    "default_store_url",
    "mask_url",
    "open_store",
]


def default_store_url() -> str:
    """``$PERPER_STORE`` if set, else :data:`DEFAULT_STORE_URL`."""
    return os.environ.get("PERPER_STORE") or DEFAULT_STORE_URL


def open_store(url: str | None = None) -> LogStore:
    """Open the store a URL names.

    URLs: ``memory://``, ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``,
    ``ignite://host:port[,host:port...]``. None means :func:`default_store_url`.

    Raises:
        ConfigError: the URL is not one of those.
        FormatError: the file is not a perper log of this format.
        StoreUnavailableError: the store cannot be reached (Ignite: on first use).
    """
    url = url or default_store_url()
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "memory":
        return MemoryStore(url)
    if scheme == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        from perper.store.sqlite import SQLiteStore

        return SQLiteStore(path, url=url)
    if scheme == "ignite":
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ConfigError(
                f"store URL {mask_url(url)!r} names no node: write ignite://127.0.0.1:10800"
            )
        try:
            from perper.store.ignite import IgniteStore
        except ImportError as error:
            raise ConfigError(
                f"store URL {mask_url(url)!r} needs the Ignite extra: "
                f"pip install 'perper[ignite]' ({error})"
            ) from error
        return IgniteStore.from_url(url)
    raise ConfigError(
        f"unknown store URL {mask_url(url)!r}: use memory://, sqlite:///path.db or "
        "ignite://host:port"
    )
