"""The ``perper`` command.

Exit codes: 0 success; 1 a run failed (an execution raised); 2 bad input (usage, app,
parameters, store URL or file) — the message says what to fix.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import typing
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from perper import codec
from perper.app import StreamFunction, load_app
from perper.errors import ConfigError, PerperError
from perper.runtime import Runtime
from perper.runtime.listing import StreamRow, list_streams
from perper.store import LogStore, default_store_url, open_store

T = TypeVar("T")

STORE_HELP = "Store URL (default: $PERPER_STORE, else sqlite:///.perper/perper.db)."


def _fail(message: str, code: int = 2) -> typing.NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _handle_errors(command: Callable[..., T]) -> Callable[..., T]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return command(*args, **kwargs)
        except PerperError as error:
            _fail(str(error))

    return wrapper


def _run_async(main: Awaitable[T]) -> T:
    return asyncio.run(main)  # type: ignore[arg-type]


async def _with_store(url: str | None, body: Callable[[LogStore], Awaitable[T]]) -> T:
    store = open_store(url or default_store_url())
    try:
        return await body(store)
    finally:
        await store.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="perper")
def main() -> None:
    """Perper: stream processing over durable, ordered, replayable logs."""


# ------------------------------------------------------------------------- run


def parse_params(launcher: StreamFunction, pairs: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``key=value`` strings into launcher arguments.

    Values are JSON when they parse as JSON (``count=10``, ``names=["a","b"]``), else
    strings; a parameter annotated ``int``, ``float``, ``bool`` or ``str`` is converted to
    that type.

    Raises:
        ConfigError: a pair has no ``=``, names no parameter, or does not convert.
    """
    hints = _type_hints(launcher)
    parameters = launcher.signature.parameters
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r} must look like key=value")
        if key not in parameters:
            accepted = ", ".join(parameters) or "none"
            raise ConfigError(
                f"--param {key}: the launcher {launcher.name}() has no parameter {key!r} "
                f"(it takes: {accepted})"
            )
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        expected = hints.get(key)
        params[key] = _convert(key, raw, value, expected)
    return params


def _type_hints(fn: StreamFunction) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn.fn)
    except Exception:  # unresolvable annotations: no conversion
        return {}


def _convert(key: str, raw: str, value: Any, expected: Any) -> Any:
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"--param {key}={raw}: {key} must be an integer, e.g. {key}=10")
    elif expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"--param {key}={raw}: {key} must be a number, e.g. {key}=0.5")
        value = float(value)
    elif expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"--param {key}={raw}: {key} must be true or false")
    elif expected is str:
        value = raw
    return value


@main.command()
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@click.option("--store", "store_url", metavar="URL", help=STORE_HELP)
@click.option("--run", "run_name", metavar="NAME", help="Run name; the same name resumes it.")
@click.option("--param", "params", metavar="KEY=VALUE", multiple=True,
              help="A launcher parameter (repeatable); values are JSON or strings.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings from the app's loggers.")
@_handle_errors
def run(app_file: str, store_url: str | None, run_name: str | None, params: tuple[str, ...],
        quiet: bool) -> None:
    """Run APP.py's launcher and every stream it starts, until all finite ones finish.

    Running the same --run NAME again resumes an unfinished run (items already stored are
    verified, never duplicated) or reports that it is done.
    """
    _configure_logging(logging.WARNING if quiet else logging.INFO)
    app = load_app(app_file)
    launcher = app.launcher_function
    arguments = parse_params(launcher, params)
    if run_name is None:
        run_name = f"{app.name}-{os.urandom(4).hex()}"
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"run [bold]{run_name}[/bold] of {app_file} on {store_url or default_store_url()}")

    async def body(store: LogStore) -> int:
        runtime = Runtime(store, app)
        result = await runtime.run(run_name, arguments)
        rows = await list_streams(store, run=run_name)
        Console().print(_streams_table(rows))
        if result.already_done:
            console.print(f"run {run_name} was already done; nothing to do")
        elif result.ok:
            console.print(f"run {run_name} done")
        else:
            console.print(str(result), style="red", markup=False, highlight=False)
            return 1
        return 0

    code = _run_async(_with_store(store_url, body))
    sys.exit(code)


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _streams_table(rows: list[StreamRow]) -> Table:
    table = Table("name", "function", "items", "status")
    for row in rows:
        table.add_row(row.name, row.function, str(row.items), row.status)
    return table


# --------------------------------------------------------------------- streams


@main.group()
def streams() -> None:
    """List streams and print their items."""


@streams.command("ls")
@click.option("--store", "store_url", metavar="URL", help=STORE_HELP)
@click.option("--run", "run_name", metavar="NAME", help="Only the streams of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@_handle_errors
def streams_ls(store_url: str | None, run_name: str | None, as_json: bool) -> None:
    """One row per stream: name, function, items, status."""

    async def body(store: LogStore) -> list[StreamRow]:
        return await list_streams(store, run=run_name)

    rows = _run_async(_with_store(store_url, body))
    if as_json:
        click.echo(json.dumps([
            {"name": r.name, "function": r.function, "items": r.items, "status": r.status}
            for r in rows
        ], indent=2))
    else:
        Console().print(_streams_table(rows))


@streams.command("cat")
@click.argument("name")
@click.option("--store", "store_url", metavar="URL", help=STORE_HELP)
@click.option("--start", type=click.IntRange(min=0), default=0, show_default=True,
              help="First seq to print.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Print at most this many items.")
@_handle_errors
def streams_cat(name: str, store_url: str | None, start: int, limit: int | None) -> None:
    """Print the items of stream NAME, one JSON value per line."""

    async def body(store: LogStore) -> None:
        info = await store.info(name)
        if info.head == 0 and not info.sealed and not await store.streams(prefix=name):
            raise ConfigError(
                f"no stream {name!r} in {store.url}; 'perper streams ls' lists the streams"
            )
        stop = None if limit is None else start + limit
        out = sys.stdout
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        async for _, items in store.read_batches(name, start=start, stop=stop):
            out.write("".join(dumps(codec.to_jsonable(item)) + "\n" for item in items))
        out.flush()

    _run_async(_with_store(store_url, body))


def _attach_optional_groups() -> None:
    try:
        from perper.fabric_cli import fabric_group
    except ImportError:  # pragma: no cover - the fabric module ships with perper
        return
    main.add_command(fabric_group, "fabric")


_attach_optional_groups()

__all__ = ["main", "parse_params"]

if __name__ == "__main__":  # pragma: no cover
    main()
