"""``perper run`` and ``perper worker``: execute an app's runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

import click
from rich.console import Console

from perper.app import load_app
from perper.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    configure_logging,
    exit_code_for_signal,
    fail,
    handle_errors,
    mask_url,
    run_async,
    store_option,
    store_url_or_default,
    with_store,
)
from perper.cli.streams import streams_table
from perper.errors import ConfigError, FormatError, PerperError
from perper.params import parse_params
from perper.replay.engine import replay_async
from perper.runtime import RunResult, Runtime, RuntimeSettings
from perper.runtime.listing import list_streams
from perper.runtime.records import DONE, RUNNING
from perper.runtime.supervisor import StopRequest, supervise_workers, worker_argv, worker_env
from perper.store import LogStore

__all__ = ["run_command", "worker_command"]

_log = logging.getLogger("perper.worker")

_lease_ttl_option = click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=RuntimeSettings().lease_ttl,
    show_default=True,
    help="Seconds without renewal after which a dead worker's executions move.",
)
_quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Only warnings from the app's loggers."
)


@click.command("run")
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@store_option
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
@_lease_ttl_option
@_quiet_option
@handle_errors
def run_command(
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
    verified, never duplicated); for a run that is done it runs nothing new and replays
    the run read-only with today's code, so what the run printed is printed again (exit 1
    if today's code no longer reproduces it). With --workers N the run is
    shared by N `perper worker` processes (a killed one is restarted; the others take
    its executions over once its leases expire).
    """
    configure_logging(logging.WARNING if quiet else logging.INFO)
    app = load_app(app_file)
    launcher = app.launcher_function
    arguments = parse_params(launcher, params)
    if run_name is None:
        run_name = f"{app.name}-{os.urandom(4).hex()}"
    url = store_url_or_default(store_url)
    if workers:
        _refuse_process_local_store(url, f"--workers {workers}")
    console = Console(stderr=True, soft_wrap=True)
    console.print(f"run [bold]{run_name}[/bold] of {app_file} on {mask_url(url)}")

    async def body(store: LogStore) -> int:
        runtime = Runtime(
            store, app, settings=RuntimeSettings(lease_ttl=lease_ttl), worker_id=_worker_id()
        )
        stop = StopRequest()
        _stop_on_signals(stop)
        progress = asyncio.ensure_future(_show_progress(store, run_name, console))
        result: RunResult | None
        try:
            if await runtime.prepare_run(run_name, arguments):
                result = RunResult(run_name, DONE, already_done=True)
            elif workers:
                command = worker_argv(app_file, run_name, lease_ttl=lease_ttl, quiet=quiet)
                result = await supervise_workers(
                    store,
                    command,
                    run_name,
                    workers,
                    report=console.print,
                    stop=stop,
                    env=worker_env(url),
                )
            else:
                # Stops gracefully on the signal: executions checkpoint, leases are released.
                result = await runtime.work(run=run_name, stop=stop.event)
        finally:
            progress.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await progress
        rows = await list_streams(store, run=run_name)
        Console().print(streams_table(rows))
        if result is None:
            assert stop.signum is not None
            name = signal.Signals(stop.signum).name
            console.print(
                f"run {run_name} stopped by {name}; its leases are released: run the same "
                f"command (--run {run_name}) to resume it"
            )
            return exit_code_for_signal(stop.signum)
        if result.already_done:
            console.print(
                f"run {run_name} was already done; nothing new runs. Replaying it read-only "
                "with today's code, so what it printed is printed again:"
            )
            try:
                replayed = await replay_async(store, app, run=run_name)
            except FormatError:
                raise  # a corrupt log: exit 2 naming it (handle_errors), never "done"
            except PerperError as error:
                console.print(f"(it cannot be replayed: {error})", markup=False)
            else:
                if not replayed.ok:
                    console.print(replayed.describe(), style="red", markup=False, highlight=False)
                    return EXIT_FAILED
                console.print(
                    f"replayed {len(replayed)} execution(s): today's code reproduces the run"
                )
        elif result.ok:
            console.print(f"run {run_name} done")
        else:
            console.print(str(result), style="red", markup=False, highlight=False)
            return EXIT_FAILED
        return EXIT_OK

    code = run_async(with_store(store_url, body, create=True))
    sys.exit(code)


def _stop_on_signals(stop: StopRequest) -> None:
    """SIGINT/SIGTERM ask ``stop`` to stop; a second one acts as if perper had no handler."""
    loop = asyncio.get_running_loop()

    def handle(signum: int) -> None:
        stop.set(signum)
        for other in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(other)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, handle, signum)


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


def _refuse_process_local_store(url: str, what: str) -> None:
    """Exit 2 if ``url`` is a store that no other process can see (``memory://``): a
    worker process would wait on an empty store of its own forever."""
    if url.startswith("memory://"):
        fail(
            f"{what} needs a store shared between processes, and {url!r} is a new, empty "
            "store in every process: give --store sqlite:///PATH.db or ignite://HOST:PORT"
            + (", or drop --workers to run in this process" if what.startswith("--") else "")
        )


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@click.command("worker")
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@store_option
@click.option("--run", "run_name", metavar="NAME", help="Only this run; exit once it has ended.")
@_lease_ttl_option
@_quiet_option
@handle_errors
def worker_command(
    app_file: str, store_url: str | None, run_name: str | None, lease_ttl: float, quiet: bool
) -> None:
    """Join a store and run unfinished executions of APP.py's runs until stopped.

    It serves the App APP.py defines and every App it imports (agent types).

    SIGINT/SIGTERM stop it gracefully: each execution finishes its current batch,
    checkpoints and gives its lease back; then it exits 0 (a signal is how a worker
    ends). With --run NAME it exits once that run has ended: 0 done, 1 failed. While
    there is nothing to do it says, after a few seconds, what it is waiting for.
    """
    configure_logging(logging.WARNING if quiet else logging.INFO)
    _refuse_process_local_store(store_url_or_default(store_url), "perper worker")
    app = load_app(app_file)

    async def body(store: LogStore) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if run_name is not None:
            entry = await store.meta_get("runs", run_name)
            if entry is not None and entry.value["app"] != app.name:
                raise ConfigError(
                    f"run {run_name!r} in {mask_url(store.url)} belongs to app "
                    f"{entry.value['app']!r}, not {app.name!r}: start a worker with that app's file"
                )
        runtime = Runtime(
            store, app, settings=RuntimeSettings(lease_ttl=lease_ttl), worker_id=_worker_id()
        )
        watchdog = asyncio.ensure_future(_say_what_it_waits_for(store, app.name, run_name))
        try:
            result = await runtime.work(run=run_name, stop=stop)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        return EXIT_FAILED if result is not None and not result.ok else EXIT_OK

    sys.exit(run_async(with_store(store_url, body, create=True)))


#: Seconds a worker with nothing to do waits before it says what it is waiting for.
WAITING_NOTE_AFTER = 5.0


async def _say_what_it_waits_for(store: LogStore, app: str, run: str | None) -> None:
    """Log, after :data:`WAITING_NOTE_AFTER` seconds and then at growing intervals, what a
    worker with nothing to do waits for; a run started later is still picked up."""
    delay = WAITING_NOTE_AFTER
    while True:
        await asyncio.sleep(delay)
        delay = min(delay * 4, 600.0)
        where = mask_url(store.url)
        if run is not None:
            if await store.meta_get("runs", run) is None:
                _log.warning(
                    "waiting for run %r: %s has no such run (yet); start it with 'perper run "
                    "APP.py --run %s', or check --run and --store",
                    run,
                    where,
                    run,
                )
            continue
        running = [
            key
            for key, meta in await store.meta_scan("runs")
            if meta.value["app"] == app and meta.value["status"] == RUNNING
        ]
        if not running:
            _log.warning(
                "waiting for work: %s has no unfinished run of app %r (yet); start one with "
                "'perper run APP.py', or check --store",
                where,
                app,
            )
