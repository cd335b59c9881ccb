"""``perper export`` and ``perper mirror``: copy a store into a SQLite file or another store.

Attached to the main CLI by :mod:`perper.cli`; the copying is :mod:`perper.store.mirror`,
the flat tables :mod:`perper.store.flat`. Exit codes: 0 done; 2 bad input or a store
that cannot be used (the message names the value and the fix).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from perper.cli.common import (
    existing_sqlite_file,
    fail,
    refuse_bare_path,
    run_async,
    tls_hint,
)
from perper.errors import ConfigError, PerperError, StoreUnavailableError
from perper.store import LogStore, open_store
from perper.store.flat import write_flat_tables
from perper.store.mirror import CopyStats, copy_store, follow
from perper.store.readonly import ReadOnlyStore
from perper.store.sqlite import SQLiteStore
from perper.store.urls import mask_url, sqlite_path, sqlite_url

__all__ = ["export_command", "mirror_command"]

T = TypeVar("T")


def _open(url: str, what: str) -> LogStore:
    """Open a store named on the command line; exit 2 with a clear message if it cannot be
    used (another kind of file, another app's database, another format, unreadable). A
    SQLite source is opened read-only: copying from a log never writes to it."""
    refuse_bare_path(url, what)
    try:
        if what == "SRC_URL":
            path = existing_sqlite_file(url, what)  # opening it would create an empty log
            if path is not None:
                source = SQLiteStore(path, url=url, read_only=True)
                return ReadOnlyStore(source, reason="as a source")
        return open_store(url)
    except PerperError as error:
        fail(f"{what} {mask_url(url)!r}: {error}")


def _run(body: Callable[[], Awaitable[T]], *urls: str) -> T:
    try:
        return run_async(body())
    except StoreUnavailableError as error:
        hints = [hint for hint in map(tls_hint, urls) if hint]
        fail("\n  ".join([str(error), *hints]))
    except PerperError as error:
        fail(str(error))


class _Bar:
    """A rich progress bar on stderr: items copied / items to copy."""

    def __init__(self, description: str) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("items"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.description = description
        self.task: TaskID | None = None
        self.base = 0  # items of earlier passes (follow)
        self.last = 0

    def __enter__(self) -> _Bar:
        self.progress.start()
        self.task = self.progress.add_task(self.description, total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, copied: int, total: int) -> None:
        assert self.task is not None
        if copied < self.last:  # a new pass of follow
            self.base += self.last
        self.last = copied
        self.progress.update(self.task, completed=self.base + copied, total=self.base + total)


def _dest_path(dest: str) -> Path:
    if "://" in dest:
        with contextlib.suppress(ConfigError):
            path = sqlite_path(dest)
            if path is not None:
                return path
        fail(
            f"DEST {dest!r} must be a SQLite file path such as out.sqlite (or sqlite:///out.sqlite); "
            "to copy into another kind of store use 'perper mirror SRC_URL DEST_URL'"
        )
    if Path(dest).is_dir():
        fail(f"DEST {dest!r} is a folder; give a file name such as {dest.rstrip('/')}/log.sqlite")
    return Path(dest)


def _same(src: str, dest: str) -> bool:
    def norm(url: str) -> str:
        with contextlib.suppress(ConfigError):
            path = sqlite_path(url)
            if path is not None:
                return sqlite_url(path.resolve())
        return url

    return not src.startswith("memory://") and norm(src) == norm(dest)


_run_option = click.option(
    "--run",
    "run_name",
    metavar="NAME",
    help="Only this run: its streams and metadata, its agent instances' (NAME.APP-N), and "
    "the streams outside it that it reads (its inputs: those a StreamRef in its parameters, "
    "its items or its checkpoints names).",
)
_streams_option = click.option(
    "--streams", "glob", metavar="GLOB",
    help="Only streams whose name matches this glob, e.g. 'r1/generator-*' (quote it).",
)  # fmt: skip


@click.command("export")
@click.argument("src_url", metavar="SRC_URL")
@click.argument("dest", metavar="DEST.sqlite")
@_run_option
@_streams_option
@click.option(
    "--flat", is_flag=True,
    help="Also write each stream as a plain table (seq + item fields) for sqlite3/Datasette.",
)  # fmt: skip
def export_command(
    src_url: str, dest: str, run_name: str | None, glob: str | None, flat: bool
) -> None:
    """Copy streams and metadata of SRC_URL into the SQLite log DEST.sqlite.

    Segments are copied without decoding items. Running the same export again resumes it
    (only what is missing is copied), so a big export can be interrupted safely. The file
    is a perper log: 'perper streams ls --store sqlite:///DEST.sqlite' and 'perper replay'
    open it.
    """
    path = _dest_path(dest)
    dest_url = sqlite_url(path)
    if _same(src_url, dest_url):
        fail(f"SRC_URL and DEST are the same store ({mask_url(src_url)}); export into another file")
    src = _open(src_url, "SRC_URL")
    # A new file is written under a temporary name and renamed once complete, so a failed
    # export (a corrupt source, a full disk) leaves nothing behind; an existing one is
    # resumed in place.
    fresh = not path.exists()
    target = path.with_name(f".{path.name}.partial") if fresh else path
    if fresh:
        _remove_sqlite(target)

    async def body() -> CopyStats:
        try:
            destination = _open(f"sqlite:///{target}", "DEST")
            try:
                with _Bar(f"export {src.url}") as bar:
                    stats = await copy_store(
                        src, destination, run=run_name, streams=glob, progress=bar
                    )
                if flat:
                    await write_flat_tables(destination, target, run=run_name, streams=glob)
            finally:
                await destination.close()
        finally:
            await src.close()
        return stats

    try:
        stats = _run(body, src_url)
    except BaseException:
        if fresh:
            _remove_sqlite(target)
        raise
    if fresh:
        target.replace(path)
    click.echo(f"exported {stats} into {path}", err=True)
    _warn_if_empty(stats, src.url, run_name, glob)


@click.command("mirror")
@click.argument("src_url", metavar="SRC_URL")
@click.argument("dest_url", metavar="DEST_URL")
@_run_option
@_streams_option
@click.option(
    "--follow",
    "following",
    is_flag=True,
    help="Keep copying new items until SIGINT/SIGTERM, then flush and exit.",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="With --follow: seconds between passes (the bound on the lag).",
)
def mirror_command(
    src_url: str,
    dest_url: str,
    run_name: str | None,
    glob: str | None,
    following: bool,
    poll: float,
) -> None:
    """Copy streams and metadata of SRC_URL into the store DEST_URL (any kind).

    Resumable and idempotent like export. With --follow it keeps the copy within --poll
    seconds of the source until stopped; SIGINT or SIGTERM stops it after a final pass.
    """
    if _same(src_url, dest_url):
        fail(
            f"SRC_URL and DEST_URL are the same store ({mask_url(src_url)}); mirror into another store"
        )
    src = _open(src_url, "SRC_URL")
    dest = _open(dest_url, "DEST_URL")

    async def body() -> CopyStats:
        try:
            with _Bar(f"mirror {src.url}") as bar:
                if not following:
                    return await copy_store(src, dest, run=run_name, streams=glob, progress=bar)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, stop.set)
                try:
                    return await follow(
                        src, dest, run=run_name, streams=glob, poll=poll, stop=stop, progress=bar
                    )
                finally:
                    for signum in (signal.SIGINT, signal.SIGTERM):
                        loop.remove_signal_handler(signum)
        finally:
            await src.close()
            await dest.close()

    stats = _run(body, src_url, dest_url)
    click.echo(f"mirrored {stats} into {dest.url}", err=True)
    _warn_if_empty(stats, src.url, run_name, glob)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def _warn_if_empty(stats: CopyStats, src_url: str, run: str | None, glob: str | None) -> None:
    if stats.streams == 0:
        what = " ".join(
            f"{flag} {value}" for flag, value in (("--run", run), ("--streams", glob)) if value
        )
        click.echo(
            f"note: {src_url} holds no streams{' matching ' + what if what else ''}; check the "
            "URL (for Ignite, its namespace) and the selection",
            err=True,
        )
