"""SIGINT/SIGTERM stop `perper run` cleanly: leases released, workers waited for, 130/143."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import perper

SLOW_APP = """
import asyncio
from collections.abc import AsyncIterator
import perper

app = perper.App("slow")

@app.stream
async def ticks(ctx: perper.Context, count: int) -> AsyncIterator[int]:
    for i in range(count):
        await asyncio.sleep(0.002)
        yield i

@app.stream(recovery="checkpoint", checkpoint_every=10)
async def total(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    async for i in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + i
        yield ctx.state["sum"]

@app.launcher
async def main(ctx: perper.Context, count: int = 3000) -> None:
    await ctx.start(total, await ctx.start(ticks, count=count))
"""


def wait_until(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def head(url: str, stream: str) -> int:
    async with perper.open_store(url) as store:
        return await store.head(stream) if await store.streams(prefix=stream) else 0


async def lease_owners(url: str, run: str) -> list[object]:
    async with perper.open_store(url) as store:
        return [m.value["owner"] for _, m in await store.meta_scan("leases", prefix=run + "/")]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "workers"),
    [
        (signal.SIGTERM, 143, "0"),
        (signal.SIGINT, 130, "0"),
        (signal.SIGTERM, 143, "2"),
    ],
)
def test_a_signal_stops_perper_run_releasing_its_leases_and_its_workers(
    tmp_path: Path, signum: signal.Signals, code: int, workers: str
) -> None:
    app_file = tmp_path / "slow.py"
    app_file.write_text(SLOW_APP)
    url = f"sqlite:///{tmp_path / 's.db'}"
    run = subprocess.Popen(
        [sys.executable, "-m", "perper.cli", "run", str(app_file), "--store", url,
         "--run", "s", "--workers", workers, "--lease-ttl", "30", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: asyncio.run(head(url, "s/total-1")) > 50)
        workers_before = children_of(run.pid)
        assert len(workers_before) == int(workers)
        run.send_signal(signum)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == code, err
    assert f"stopped by {signum.name}" in err and "--run s" in err
    owners = asyncio.run(lease_owners(url, "s"))
    assert owners and all(owner is None for owner in owners)  # no lease waits out its TTL
    for pid in workers_before:  # no orphaned worker
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        )

    # The same command resumes it and finishes the run exactly once.
    again = subprocess.run(
        [sys.executable, "-m", "perper.cli", "run", str(app_file), "--store", url,
         "--run", "s", "-q"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr

    async def totals() -> list[object]:
        async with perper.open_store(url) as store:
            return [item async for _, item in store.read("s/total-1")]

    assert asyncio.run(totals()) == [sum(range(i + 1)) for i in range(3000)]


def test_a_worker_for_a_run_that_does_not_exist_says_what_it_waits_for(tmp_path: Path) -> None:
    app_file = tmp_path / "slow.py"
    app_file.write_text(SLOW_APP)
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "perper.cli", "worker", str(app_file), "--store",
             f"sqlite:///{tmp_path / 'w.db'}", "--run", "nope", "-q"],
            stderr=err, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until(lambda: "waiting for run 'nope'" in log.read_text())
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=30) == 0  # a signal is how a worker ends
        finally:
            if worker.poll() is None:
                worker.kill()
    text = log.read_text()
    assert "has no such run (yet)" in text and "perper run APP.py --run nope" in text
    assert "Traceback" not in text


def test_a_worker_for_another_apps_run_exits_2_naming_both_apps(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLES

    url = f"sqlite:///{tmp_path / 'o.db'}"
    command = [sys.executable, "-m", "perper.cli"]
    ran = subprocess.run(
        [*command, "run", str(EXAMPLES / "basic.py"), "--store", url, "--run", "b", "-q"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    (tmp_path / "slow.py").write_text(SLOW_APP)
    worker = subprocess.run(
        [*command, "worker", str(tmp_path / "slow.py"), "--store", url, "--run", "b"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert worker.returncode == 2
    assert "belongs to app 'basic', not 'slow'" in worker.stderr
