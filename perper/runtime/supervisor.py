"""Worker supervision: run one run on N ``perper worker`` processes (``perper run --workers``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence

from perper.errors import PerperError
from perper.runtime.engine import RunResult, failures_of, run_executions
from perper.runtime.records import DONE, FAILED, RUNNING
from perper.store import LogStore

__all__ = ["supervise_workers", "worker_argv"]

#: A worker killed by a signal is started again at most this many times in all.
MAX_RESTARTS = 1000


def worker_argv(
    app_file: str, url: str, run: str, *, lease_ttl: float, quiet: bool = False
) -> list[str]:
    """The command line of one ``perper worker`` process on ``run``."""
    return [
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


async def supervise_workers(
    store: LogStore,
    command: Sequence[str],
    run: str,
    count: int,
    *,
    report: Callable[[str], None] = lambda message: None,
    poll: float = 0.1,
) -> RunResult:
    """Start ``count`` processes of ``command`` on ``run`` and wait until it is done or failed.

    A worker killed by a signal is started again (``report`` is told); its executions move
    to a live worker when their leases expire.

    Raises:
        PerperError: every worker exited before the run ended.
    """

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
            await asyncio.sleep(poll)
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
