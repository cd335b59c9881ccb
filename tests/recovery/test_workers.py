"""Real worker processes: graceful stop, and SIGKILL at random moments."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import perper
from perper.runtime import Runtime
from tests.conftest import EXAMPLES

SLOW_APP = """
import asyncio
import perper

app = perper.App("slow")

@app.stream
async def ticks(ctx, count: int):
    for i in range(count):
        await asyncio.sleep(0.001)
        yield i

@app.stream(recovery="checkpoint", checkpoint_every=10)
async def total(ctx, source):
    async for i in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + i
        yield ctx.state["sum"]

@app.launcher
async def main(ctx, count: int = 1000):
    await ctx.start(total, await ctx.start(ticks, count=count))
"""


def perper_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "perper.cli", *args]


def wait_until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def head(url: str, stream: str) -> int:
    async with perper.open_store(url) as store:
        return await store.head(stream)


def test_sigterm_stops_a_worker_gracefully_and_another_finishes_the_run(tmp_path: Path) -> None:
    app_file = tmp_path / "slow.py"
    app_file.write_text(SLOW_APP)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    app = perper.load_app(app_file)

    async def prepare() -> None:
        async with perper.open_store(url) as store:
            assert not await Runtime(store, app).prepare_run("w", {"count": 3000})

    asyncio.run(prepare())
    worker = subprocess.Popen(
        perper_command("worker", str(app_file), "--store", url, "-q"), stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: asyncio.run(head(url, "w/total-1")) > 100)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    async def inspect() -> tuple[list[object], dict[str, object] | None, int]:
        async with perper.open_store(url) as store:
            leases = [m.value["owner"] for _, m in await store.meta_scan("leases", prefix="w/")]
            checkpoint = await store.meta_get("checkpoints", "w/total-1")
            return leases, checkpoint.value if checkpoint else None, await store.head("w/ticks-0")

    owners, checkpoint, produced = asyncio.run(inspect())
    assert owners and all(owner is None for owner in owners)  # every lease given back
    assert checkpoint is not None and checkpoint["positions"][0][1] > 0
    assert produced < 3000  # it really stopped midway

    finisher = subprocess.run(
        perper_command("worker", str(app_file), "--store", url, "--run", "w", "-q"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finisher.returncode == 0, finisher.stderr

    async def result() -> list[object]:
        async with perper.open_store(url) as store:
            return [item async for _, item in store.read("w/total-1")]

    assert asyncio.run(result()) == [sum(range(i + 1)) for i in range(3000)]


@pytest.mark.slow
def test_sigkilled_workers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    basic = str(EXAMPLES / "basic.py")
    count = "60000"
    reference = subprocess.run(
        perper_command(
            "run",
            basic,
            "--run",
            "k",
            "--param",
            f"count={count}",
            "--store",
            "sqlite:///ref.db",
            "-q",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reference.returncode == 0, reference.stderr
    command = perper_command(
        "run",
        basic,
        "--workers",
        "2",
        "--run",
        "k",
        "--param",
        f"count={count}",
        "--store",
        "sqlite:///k.db",
        "-q",
        "--lease-ttl",
        "0.5",
    )
    rng = random.Random(int(os.environ.get("PERPER_KILL_SEED", "11")))
    kills, parent_kills = 0, 0
    for _ in range(20):
        parent = subprocess.Popen(
            command,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while parent.poll() is None and kills < 8:
            time.sleep(rng.uniform(0.05, 0.4))
            children = subprocess.run(
                ["pgrep", "-P", str(parent.pid)], capture_output=True, text=True
            ).stdout.split()
            if children:
                try:
                    os.kill(int(rng.choice(children)), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
        if parent.poll() is None and parent_kills == 0:
            # kill the whole run (parent and workers) once; the same command resumes it
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
            parent_kills += 1
            continue
        if parent.wait(timeout=300) == 0:
            break
    else:
        pytest.fail("the run never finished")
    assert kills >= 1
    for name in ["k/generator-0", "k/processor-1", "k/consumer-2"]:
        cat = [
            subprocess.run(
                perper_command("streams", "cat", name, "--store", store),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
            for store in ("sqlite:///k.db", "sqlite:///ref.db")
        ]
        assert cat[0] == cat[1], name
    assert len(cat[0].splitlines()) == 0  # the consumer yields nothing
