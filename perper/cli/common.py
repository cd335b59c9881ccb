"""What every ``perper`` command shares: exit codes, failing, stores from ``--store``.

Exit codes (the README's table): 0 success; 1 a run failed or a replay diverged; 2 bad
input (usage, app, parameters, store URL or file) — the message says what to fix.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from perper.errors import PerperError
from perper.store import LogStore, default_store_url, open_store
from perper.store.urls import mask_url, sqlite_path

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "STORE_HELP",
    "configure_logging",
    "existing_sqlite_file",
    "fail",
    "handle_errors",
    "mask_url",
    "run_async",
    "sqlite_path",
    "store_option",
    "store_url_or_default",
    "with_store",
]

T = TypeVar("T")

EXIT_OK = 0
#: A run failed (an execution raised) or a replay diverged.
EXIT_FAILED = 1
#: Bad input: usage, app, parameters, store URL or file.
EXIT_BAD_INPUT = 2

STORE_HELP = "Store URL (default: $PERPER_STORE, else sqlite:///.perper/perper.db)."

store_option = click.option("--store", "store_url", metavar="URL", help=STORE_HELP)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(command: Callable[..., T]) -> Callable[..., T]:
    """Turn a :class:`PerperError` escaping ``command`` into ``error: ...`` and exit 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except PerperError as error:
            fail(str(error))

    return wrapper


def run_async(main: Awaitable[T]) -> T:
    """Run a coroutine to completion on a new event loop."""
    return asyncio.run(main)  # type: ignore[arg-type]


def store_url_or_default(url: str | None) -> str:
    """``--store``'s value, else ``$PERPER_STORE``, else the default SQLite log."""
    return url or default_store_url()


async def with_store(url: str | None, body: Callable[[LogStore], Awaitable[T]]) -> T:
    """Open the store ``--store`` names (or the default), run ``body`` on it, close it."""
    store = open_store(store_url_or_default(url))
    try:
        return await body(store)
    finally:
        await store.close()


def existing_sqlite_file(url: str, what: str) -> Path | None:
    """For a ``sqlite:///`` URL, its file, failing (exit 2) if there is none; else None.

    Opening a missing file would create an empty log: commands that only read call this
    first.
    """
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        fail(f"{what} {mask_url(url)!r}: there is no file {path}; check the path")
    return path


def configure_logging(level: int) -> None:
    """Log records as ``LEVEL name: message`` on stderr, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
