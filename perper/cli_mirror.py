"""``perper export`` and ``perper mirror``: copy a store into a SQLite file or another store.

Attached to the main CLI by :mod:`perper.cli`. Exit codes: 0 done; 2 bad input or a store
that cannot be used (the message names the value and the fix).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

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

from perper import codec
from perper.errors import ConfigError, PerperError
from perper.store import LogStore, open_store
from perper.store.mirror import CopyStats, copy_store, follow, selected_streams

__all__ = ["export_command", "flat_rows", "flat_table_name", "mirror_command", "write_flat_tables"]

T = TypeVar("T")

#: Tables of a perper SQLite log; a flat table never takes one of these names.
_RESERVED = {"streams", "segments", "runs", "executions", "checkpoints", "leases"}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _open(url: str, what: str) -> LogStore:
    if what == "SRC_URL" and url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():  # opening it would create an empty log and copy nothing
            _fail(f"SRC_URL {url!r}: there is no file {path}; check the path")
    try:
        return open_store(url)
    except ConfigError as error:
        _fail(f"{what} {_shown(url)!r}: {error}")


def _shown(url: str) -> str:
    """The URL with any password masked."""
    url = re.sub(r"(://[^/?#@:]*:)[^/?#@]*@", r"\1***@", url)
    return re.sub(r"((?:^|[?&])(?:password|tls_key_password)=)[^&]*", r"\1***", url)


def _run(body: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(body())  # type: ignore[arg-type]
    except PerperError as error:
        _fail(str(error))


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
        if dest.startswith("sqlite:///") and len(dest) > len("sqlite:///"):
            return Path(dest[len("sqlite:///") :])
        _fail(
            f"DEST {dest!r} must be a SQLite file path such as out.sqlite (or sqlite:///out.sqlite); "
            "to copy into another kind of store use 'perper mirror SRC_URL DEST_URL'"
        )
    if Path(dest).is_dir():
        _fail(f"DEST {dest!r} is a folder; give a file name such as {dest.rstrip('/')}/log.sqlite")
    return Path(dest)


def _same(src: str, dest: str) -> bool:
    def norm(url: str) -> str:
        if url.startswith("sqlite:///"):
            return "sqlite:///" + str(Path(url[len("sqlite:///") :]).resolve())
        return url

    return not src.startswith("memory://") and norm(src) == norm(dest)


_run_option = click.option(
    "--run", "run_name", metavar="NAME", help="Only this run's streams and metadata."
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
    dest_url = f"sqlite:///{path}"
    if _same(src_url, dest_url):
        _fail(f"SRC_URL and DEST are the same store ({_shown(src_url)}); export into another file")
    src = _open(src_url, "SRC_URL")

    async def body() -> CopyStats:
        try:
            destination = _open(dest_url, "DEST")
            try:
                with _Bar(f"export {src.url}") as bar:
                    stats = await copy_store(
                        src, destination, run=run_name, streams=glob, progress=bar
                    )
                if flat:
                    await write_flat_tables(destination, path, run=run_name, streams=glob)
            finally:
                await destination.close()
        finally:
            await src.close()
        return stats

    stats = _run(body)
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
        _fail(
            f"SRC_URL and DEST_URL are the same store ({_shown(src_url)}); mirror into another store"
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

    stats = _run(body)
    click.echo(f"mirrored {stats} into {dest.url}", err=True)
    _warn_if_empty(stats, src.url, run_name, glob)


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


# ------------------------------------------------------------------ flat tables


def flat_table_name(stream: str) -> str:
    """The plain table a stream is exported to: its name, unless a perper table has it."""
    if stream in _RESERVED or stream.lower().startswith("sqlite_"):
        return f"stream:{stream}"
    return stream


def flat_rows(first: int, items: list[Any]) -> Iterator[dict[str, Any]]:
    """Rows of a flat table: ``seq`` plus the item's top-level fields for a dict item (a
    field named ``seq`` becomes ``seq_``), or ``value`` for any other item; nested values
    as JSON text."""
    for seq, item in enumerate(items, first):
        row: dict[str, Any] = {"seq": seq}
        if type(item) is dict:
            for key, value in item.items():
                name = str(key)
                row["seq_" if name == "seq" else name] = _cell(value)
        else:
            row["value"] = _cell(item)
        yield row


def _cell(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, float, str, bytes):
        return value
    if kind is int:
        return value if -(2**63) <= value < 2**63 else str(value)  # SQLite holds int64
    return json.dumps(codec.to_jsonable(value), ensure_ascii=False)


async def write_flat_tables(
    store: LogStore, path: Path, *, run: str | None = None, streams: str | None = None
) -> list[str]:
    """Write (or bring up to date) a plain table per exported stream in the SQLite file.

    Each table continues after its highest ``seq``, so re-running an export only adds rows.
    Returns the table names.
    """
    try:
        import sqlite_utils
    except ImportError as error:
        raise ConfigError(
            f"--flat needs sqlite-utils: pip install 'perper[export]' ({error})"
        ) from error
    infos = await selected_streams(store, run=run, streams=streams)
    db = sqlite_utils.Database(path)
    names = []
    try:
        for info in infos:
            name = flat_table_name(info.name)
            names.append(name)
            table = db.table(name)
            start = 0
            if table.exists():
                quoted = '"' + name.replace('"', '""') + '"'
                done = db.execute(f"SELECT max(seq) FROM {quoted}").fetchone()[0]
                start = 0 if done is None else done + 1
            else:
                table.create({"seq": int}, pk="seq")
            columns = {column.name for column in table.columns}
            async for first, items in store.read_batches(info.name, start=start, stop=info.head):
                rows = list(flat_rows(first, items))
                for column, kind in _column_types(rows).items():
                    if column not in columns:
                        table.add_column(column, kind)
                        columns.add(column)
                table.insert_all(rows, pk="seq", replace=True)
    finally:
        db.close()
    return names


def _column_types(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A column type per field: the Python type its values share, else ``"BLOB"`` (no type
    affinity, so SQLite keeps each value as it is: ``3`` stays an integer next to text)."""
    seen: dict[str, set[type]] = {}
    for row in rows:
        for column, value in row.items():
            kinds = seen.setdefault(column, set())
            if value is not None:
                kinds.add(type(value))
    types: dict[str, Any] = {}
    for column, kinds in seen.items():
        if len(kinds) == 1:
            types[column] = kinds.pop()
        elif kinds == {int, float}:
            types[column] = float
        else:
            types[column] = "BLOB"
    return types
