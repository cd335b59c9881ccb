"""Worker supervision: run one run on N ``perper worker`` processes (``perper run --workers``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from perper.errors import PerperError
from perper.runtime.engine import RunResult, failures_of, run_executions
from perper.runtime.records import DONE, FAILED, RUNNING
from perper.store import LogStore

__all__ = ["MAX_RESTARTS", "StopRequest", "supervise_workers", "worker_argv", "worker_env"]

#: A worker killed by a signal is started again at most this many times in all.
MAX_RESTARTS = 1000


def worker_argv(app_file: str, run: str, *, lease_ttl: float, quiet: bool = False) -> list[str]:
    """The command line of one ``perper worker`` process on ``run``.

    It names no store: the store URL, which may hold credentials, goes to the worker in
    ``$PERPER_STORE`` (see :func:`worker_env`), so ``ps`` never shows a password.
    """
    return [
        sys.executable,
        "-m",
        "perper.cli",
        "worker",
        app_file,
        "--run",
        run,
        "--lease-ttl",
        str(lease_ttl),
        *(["--quiet"] if quiet else []),
    ]


def worker_env(url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker process: ``base`` (default: this process's) with
    ``$PERPER_STORE`` set to the store URL."""
    env = dict(os.environ if base is None else base)
    env["PERPER_STORE"] = url
    return env


@dataclass
class StopRequest:
    """A request to stop, e.g. from a signal handler: which signal, and an event to await.

    ``perper run`` sets it on SIGINT/SIGTERM; :func:`supervise_workers` then forwards that
    signal to its workers (each stops gracefully: checkpoints, releases its leases) and
    waits for them.
    """

    event: asyncio.Event = field(default_factory=asyncio.Event)
    signum: int | None = None

    def set(self, signum: int = signal.SIGTERM) -> None:
        """Ask to stop because of ``signum`` (the first request wins)."""
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self.event.is_set()


async def supervise_workers(
    store: LogStore,
    command: Sequence[str],
    run: str,
    count: int,
    *,
    report: Callable[[str], None] = lambda message: None,
    poll: float = 0.1,
    stop: StopRequest | None = None,
    grace: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> RunResult | None:
    """Start ``count`` processes of ``command`` on ``run`` and wait until it is done or failed.

    A worker killed by a signal is started again (``report`` is told); its executions move
    to a live worker when their leases expire.

    Args:
        stop: once set, its signal is forwarded to every worker, and each is waited for
            (``grace`` seconds, then SIGKILL); then None is returned.
        env: the workers' environment (how credentials reach them: never in argv).

    Returns:
        The run's result, or None when ``stop`` stopped the workers first.

    Raises:
        PerperError: every worker exited before the run ended.
    """

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, env=None if env is None else dict(env)
        )

    processes = [await spawn() for _ in range(count)]
    restarts = 0
    waiter = asyncio.ensure_future(stop.event.wait()) if stop is not None else None
    try:
        while True:
            if stop is not None and stop.is_set():
                assert stop.signum is not None
                await _stop_all(processes, stop.signum, grace, report)
                return None
            entry = await store.meta_get("runs", run)
            status = entry.value["status"] if entry else RUNNING
            if status in (DONE, FAILED):
                break
            for index, process in enumerate(processes):
                if (
                    process.returncode is not None
                    and process.returncode < 0
                    and restarts < MAX_RESTARTS
                ):
                    report(
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
            if waiter is not None:
                await asyncio.wait([waiter], timeout=poll)
            else:
                await asyncio.sleep(poll)
    finally:
        if waiter is not None:
            waiter.cancel()
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


async def _stop_all(
    processes: list[asyncio.subprocess.Process],
    signum: int,
    grace: float,
    report: Callable[[str], None],
) -> None:
    """Forward ``signum`` to every live worker and wait for each; SIGKILL after ``grace``."""
    live = [p for p in processes if p.returncode is None]
    for process in live:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
    if not live:
        return
    report(
        f"stopping {len(live)} worker(s) ({signal.Signals(signum).name}): they checkpoint "
        "and release their leases"
    )
    _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in live], timeout=grace)
    if late:
        for process in live:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        report(f"{len(late)} worker(s) did not stop within {grace:.0f}s; killed them")
