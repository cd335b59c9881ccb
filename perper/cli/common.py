"""What every ``perper`` command shares: exit codes, failing, stores from ``--store``.

Exit codes (the README's table): 0 success; 1 a run failed or a replay diverged; 2 bad
input (usage, app, parameters, store URL or file) — the message says what to fix.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import ssl
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlsplit

import click

from perper.errors import ConfigError, PerperError, StoreUnavailableError
from perper.store import LogStore, default_store_url, open_store
from perper.store.urls import mask_url, sqlite_path

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_OK",
    "LOOPS",
    "STORE_HELP",
    "configure_logging",
    "event_loop_factory",
    "existing_sqlite_file",
    "exit_code_for_signal",
    "fail",
    "handle_errors",
    "mask_url",
    "open_store_option",
    "refuse_bare_path",
    "run_async",
    "sqlite_path",
    "store_option",
    "store_url_or_default",
    "tls_hint",
    "with_store",
]

T = TypeVar("T")

EXIT_OK = 0
#: A run failed (an execution raised) or a replay diverged.
EXIT_FAILED = 1
#: Bad input: usage, app, parameters, store URL or file.
EXIT_BAD_INPUT = 2


def exit_code_for_signal(signum: int) -> int:
    """128 + the signal's number, the shell's convention: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


STORE_HELP = "Store URL (default: $PERPER_STORE, else sqlite:///.perper/perper.db)."

store_option = click.option("--store", "store_url", metavar="URL", help=STORE_HELP)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def handle_errors(command: Callable[..., T]) -> Callable[..., T]:
    """Turn a :class:`PerperError` escaping ``command`` into ``error: ...`` and exit 2.

    A store that "cannot be reached" although its port answers gets the likely reason
    (see :func:`tls_hint`).
    """

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except StoreUnavailableError as error:
            url = kwargs.get("store_url") or store_url_or_default(None)
            hint = tls_hint(url) if isinstance(url, str) else None
            fail(f"{error}\n  {hint}" if hint else str(error))
        except PerperError as error:
            fail(str(error))

    return wrapper


def tls_hint(url: str, *, timeout: float = 2.0) -> str | None:
    """Why an ``ignite://`` node whose port accepts connections may still be unreachable:
    it speaks TLS and the URL does not ask for it, or the reverse. None if neither."""
    parts = urlsplit(url)
    if parts.scheme != "ignite":
        return None
    first = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
    host, _, port_text = first.rpartition(":")
    if not host or not port_text.isdigit():
        return None
    options = dict(parse_qsl(parts.query))
    wants_tls = options.get("tls", "0").lower() in ("1", "true", "yes", "on") or any(
        options.get(name) for name in ("tls_ca", "tls_cert", "tls_key")
    )
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as raw:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                with context.wrap_socket(raw, server_hostname=host):
                    speaks_tls = True
            except (ssl.SSLError, OSError):
                speaks_tls = False
    except OSError:
        return None  # nothing listens: "cannot reach" is the truth
    if speaks_tls and not wants_tls:
        return (
            f"the node at {host}:{port_text} answers, but speaks TLS: add ?tls=1 to the URL "
            "(and tls_ca=CERT.pem to check its certificate)"
        )
    if wants_tls and not speaks_tls:
        return (
            f"the node at {host}:{port_text} answers, but does not speak TLS: drop tls=1 "
            "(and the other tls_ options) from the URL"
        )
    return None


#: The event loops ``$PERPER_LOOP`` may name; unset (or ``auto``), the first installed.
LOOPS = ("uvloop", "asyncio")


def event_loop_factory(choice: str | None) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the event loop of a ``perper`` command, for ``$PERPER_LOOP=choice``.

    ``uvloop`` (the ``fast`` extra, not on Windows): its scheduling and dispatch are C,
    so every task wake-up costs less (docs/ingest.md has the figures). ``asyncio``: the
    standard library's loop. None, empty or ``auto``: uvloop if it is installed, else
    asyncio's. The simulator, replay and ``perper ui`` run on loops of their own.

    Raises:
        ConfigError: ``choice`` is another name, or ``uvloop`` when it is not installed.
    """
    name = (choice or "auto").strip().lower()
    if name not in (*LOOPS, "auto"):
        raise ConfigError(
            f"PERPER_LOOP={choice!r} is not an event loop perper knows: set it to one of "
            f"{', '.join(LOOPS)} (or auto, or leave it unset: uvloop if installed)"
        )
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if name == "auto":
            return asyncio.new_event_loop
        raise ConfigError(
            "PERPER_LOOP=uvloop but uvloop is not installed: pip install 'perper[fast]' "
            "(not available on Windows), or set PERPER_LOOP=asyncio"
        ) from None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Awaitable[T]) -> T:
    """Run a coroutine to completion on a new event loop: the one ``$PERPER_LOOP``
    chooses (:func:`event_loop_factory`; exit 2 on a bad value)."""
    try:
        factory = event_loop_factory(os.environ.get("PERPER_LOOP"))
    except ConfigError as error:
        fail(str(error))
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)  # type: ignore[arg-type]


def store_url_or_default(url: str | None) -> str:
    """``--store``'s value, else ``$PERPER_STORE``, else the default SQLite log."""
    return url or default_store_url()


def open_store_option(url: str | None, *, create: bool) -> LogStore:
    """Open the store ``--store`` names (or the default).

    Args:
        create: whether the command writes: only then may a missing SQLite file (and its
            folder) be created. A read-only command on a missing file fails with exit 2.

    Raises:
        ConfigError: a bad URL (exit 2 through :func:`handle_errors`).
    """
    url = store_url_or_default(url)
    refuse_bare_path(url, "--store")
    if not create:
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            fail(
                f"store {mask_url(url)!r}: there is no file {path}; check the path (only "
                "commands that write, such as 'perper run', create a log)"
            )
    return open_store(url)


async def with_store(
    url: str | None, body: Callable[[LogStore], Awaitable[T]], *, create: bool = False
) -> T:
    """Open the store ``--store`` names (or the default), run ``body`` on it, close it.

    ``create`` as in :func:`open_store_option`: False for commands that only read.
    """
    store = open_store_option(url, create=create)
    try:
        return await body(store)
    finally:
        await store.close()


def refuse_bare_path(url: str, what: str) -> None:
    """Exit 2 if ``url`` has no scheme, saying the URL a file path takes (``x.db`` is
    ``sqlite:///x.db``, ``/tmp/x.db`` is ``sqlite:////tmp/x.db``)."""
    if "://" not in url:
        fail(
            f"{what} {url!r} is not a store URL: for that SQLite file write sqlite:///{url}; "
            "the other stores are memory:// and ignite://host:port"
        )


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
