"""The ``perper`` command.

Exit codes: 0 success; 1 a run failed (an execution raised); 2 bad input (usage, app,
parameters, store URL or file) — the message says what to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
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
from perper.runtime import RunResult, Runtime
from perper.runtime.engine import failures_of, run_executions
from perper.runtime.listing import StreamRow, list_streams
from perper.runtime.records import DONE, FAILED, RUNNING
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
    # pyignite logs every failed connection attempt with a traceback; IgniteStore retries
    # and reports what matters as one StoreUnavailableError.
    logging.getLogger("pyignite").setLevel(logging.CRITICAL)


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
@click.option(
    "--param",
    "params",
    metavar="KEY=VALUE",
    multiple=True,
    help="A launcher parameter (repeatable); values are JSON or strings.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes to run it on (0: in this process).",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds without renewal after which a dead worker's executions move.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only warnings from the app's loggers.")
@_handle_errors
def run(
    app_file: str,
    store_url: str | None,
    run_name: str | None,
    params: tuple[str, ...],
    workers: int,
    lease_ttl: float,
    quiet: bool,
) -> None:
    """Run APP.py's launcher and every stream it starts, until all finite ones finish.

    Running the same --run NAME again resumes an unfinished run (items already stored are
    verified, never duplicated) or reports that it is done. With --workers N the run is
    shared by N `perper worker` processes (a killed one is restarted; the others take
    its executions over once its leases expire).
    """
    _configure_logging(logging.WARNING if quiet else logging.INFO)
    app = load_app(app_file)
    launcher = app.launcher_function
    arguments = parse_params(launcher, params)
    if run_name is None:
        run_name = f"{app.name}-{os.urandom(4).hex()}"
    url = store_url or default_store_url()
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"run [bold]{run_name}[/bold] of {app_file} on {url}")

    async def body(store: LogStore) -> int:
        runtime = Runtime(store, app, worker_id=_worker_id(), lease_ttl=lease_ttl)
        progress = asyncio.ensure_future(_show_progress(store, run_name, console))
        try:
            if workers:
                if await runtime.prepare_run(run_name, arguments):
                    result = RunResult(run_name, DONE, already_done=True)
                else:
                    result = await supervise_workers(
                        store, app_file, url, run_name, workers, lease_ttl, console, quiet=quiet
                    )
            else:
                result = await runtime.run(run_name, arguments)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
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


async def _show_progress(store: LogStore, run: str, console: Console) -> None:
    """On a terminal, keep one status line with the items stored so far per stream."""
    if not console.is_terminal:
        return
    await asyncio.sleep(1.0)  # short runs finish without a status line
    with console.status("") as status:
        while True:
            rows = await list_streams(store, run=run)
            total = sum(row.items for row in rows)
            busy = [row for row in rows if row.status == RUNNING]
            line = f"run {run}: {total:,} items in {len(rows)} streams, {len(busy)} running"
            if busy:
                line += (
                    " ("
                    + ", ".join(f"{row.name.rsplit('/', 1)[-1]} {row.items:,}" for row in busy[:3])
                    + ")"
                )
            status.update(line)
            await asyncio.sleep(0.5)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def supervise_workers(
    store: LogStore,
    app_file: str,
    url: str,
    run: str,
    count: int,
    lease_ttl: float,
    console: Console,
    *,
    quiet: bool = False,
) -> RunResult:
    """Start ``count`` worker processes on ``run`` and wait until it is done or failed.

    A worker killed by a signal is started again; its executions move to a live worker
    when their leases expire.
    """
    command = [
        sys.executable,
        "-m",
        "perper.cli",
        "worker",
        app_file,
        "--store",
        url,
        "--run",
        run,
        "--lease-ttl",
        str(lease_ttl),
        *(["--quiet"] if quiet else []),
    ]

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL)

    processes = [await spawn() for _ in range(count)]
    restarts = 0
    try:
        while True:
            entry = await store.meta_get("runs", run)
            status = entry.value["status"] if entry else RUNNING
            if status in (DONE, FAILED):
                break
            for index, process in enumerate(processes):
                if process.returncode is not None and process.returncode < 0 and restarts < 1000:
                    console.print(
                        f"worker {process.pid} was killed by signal "
                        f"{-process.returncode}; starting another"
                    )
                    restarts += 1
                    processes[index] = await spawn()
            if all(p.returncode is not None and p.returncode >= 0 for p in processes):
                # Workers exit on their own only once the run has ended.
                entry = await store.meta_get("runs", run)
                if entry is None or entry.value["status"] not in (DONE, FAILED):
                    raise PerperError(
                        f"every worker of run {run!r} exited before it ended; run the same "
                        "command again to resume it"
                    )
                break
            await asyncio.sleep(0.1)
    finally:
        for process in processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in processes:
            await process.wait()
    entry = await store.meta_get("runs", run)
    if entry is not None and entry.value["status"] == DONE:
        return RunResult(run, DONE)
    return RunResult(run, FAILED, failures=failures_of(await run_executions(store, run)))


@main.command()
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@click.option("--store", "store_url", metavar="URL", help=STORE_HELP)
@click.option("--run", "run_name", metavar="NAME", help="Only this run; exit once it has ended.")
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds without renewal after which a dead worker's executions move.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only warnings from the app's loggers.")
@_handle_errors
def worker(
    app_file: str, store_url: str | None, run_name: str | None, lease_ttl: float, quiet: bool
) -> None:
    """Join a store and run unfinished executions of APP.py's runs until stopped.

    SIGINT/SIGTERM stop it gracefully: each execution finishes its current batch,
    checkpoints and gives its lease back; then it exits 0.
    """
    _configure_logging(logging.WARNING if quiet else logging.INFO)
    app = load_app(app_file)

    async def body(store: LogStore) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runtime = Runtime(store, app, worker_id=_worker_id(), lease_ttl=lease_ttl)
        await runtime.work(run=run_name, stop=stop)

    _run_async(_with_store(store_url, body))


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
        click.echo(
            json.dumps(
                [
                    {"name": r.name, "function": r.function, "items": r.items, "status": r.status}
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        Console().print(_streams_table(rows))


@streams.command("cat")
@click.argument("name")
@click.option("--store", "store_url", metavar="URL", help=STORE_HELP)
@click.option(
    "--start", type=click.IntRange(min=0), default=0, show_default=True, help="First seq to print."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=None, help="Print at most this many items."
)
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
    # Commands that live in their own modules, each next to the code it drives.
    from perper.fabric_cli import fabric_group

    main.add_command(fabric_group, "fabric")
    try:
        from perper.cli_mirror import export_command, mirror_command
    except ImportError:  # not written yet
        pass
    else:
        main.add_command(export_command, "export")
        main.add_command(mirror_command, "mirror")
    try:
        from perper.cli_replay import replay_command
    except ImportError:  # not written yet
        pass
    else:
        main.add_command(replay_command, "replay")


_attach_optional_groups()

__all__ = ["main", "parse_params"]

if __name__ == "__main__":  # pragma: no cover
    main()
