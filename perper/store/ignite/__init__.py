"""IgniteStore: streams and metadata in an Apache Ignite 2.x cluster, over pyignite's
asyncio thin client (docs/ignite.md explains the layout and the protocol).

Modules, one job each:

* :mod:`~perper.store.ignite.url` — ``ignite://`` URLs, their options, masking secrets;
* :mod:`~perper.store.ignite.connection` — the client, one retry/backoff loop, error
  translation, conditional writes that verify unknown outcomes;
* :mod:`~perper.store.ignite.layout` — the key layout and the entry formats;
* :mod:`~perper.store.ignite.directory` — the listings ``streams()`` and ``meta_scan()``
  read;
* :mod:`~perper.store.ignite.store` — :class:`IgniteStore`, the contract's primitives.
"""

from __future__ import annotations

from perper.store.ignite.connection import Connection
from perper.store.ignite.layout import (
    DIRECTORY_SHARDS,
    FORMAT,
    HINT_EVERY,
    META_CACHE,
    SEGMENTS_CACHE,
)
from perper.store.ignite.store import IgniteStore
from perper.store.ignite.url import URL_OPTIONS, IgniteOptions, mask_url, parse_url

__all__ = [
    "DIRECTORY_SHARDS",
    "FORMAT",
    "HINT_EVERY",
    "META_CACHE",
    "SEGMENTS_CACHE",
    "URL_OPTIONS",
    "Connection",
    "IgniteOptions",
    "IgniteStore",
    "mask_url",
    "parse_url",
]
