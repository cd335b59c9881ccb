"""Soak check (not collected by pytest): an agents example under ``perper run --workers 2``
with worker processes SIGKILLed at random moments, then resumed with the same command.

    python tests/agents/kill_workers.py examples/agents/usage.py --kills 10 \
        [--store URL] [--seed N]

Kills one worker (a child of the ``perper run`` process, found by parent pid) at a
random moment, 10 times in all; the supervisor restarts it and the others take its
executions over once the leases expire. Then it checks the store: every call execution
is done with exactly one outcome item, no stream has a gap or a duplicate, and (for
sums.py) the running sums are 0, 1, 3, ..., 4950; it prints what it counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import perper  # noqa: E402
from perper.runtime.calls import CALL_KINDS  # noqa: E402


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def run_with_kills(
    app: str, store: str, run: str, kills: int, rng: random.Random
) -> tuple[int, str]:
    command = [
        str(ROOT / ".venv/bin/perper"),
        "run",
        app,
        "--workers",
        "2",
        "--run",
        run,
        "--store",
        store,
        "--lease-ttl",
        "0.5",
        "--quiet",
    ]
    done = 0
    outputs = ""
    while True:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        while process.poll() is None and done < kills:
            time.sleep(rng.uniform(0.02, 0.2))
            workers = children(process.pid)
            if workers and process.poll() is None:
                os.kill(rng.choice(workers), signal.SIGKILL)
                done += 1
        output, _ = process.communicate(timeout=600)
        outputs += output
        if process.returncode != 0:
            raise SystemExit(f"perper run exited {process.returncode}:\n{output}")
        if "was already done" in output or done >= kills:
            # One more time with the same command: it must report the run as done.
            again = subprocess.run(command, capture_output=True, text=True, timeout=600)
            assert "was already done" in again.stderr, again.stderr
            return done, outputs


async def check(store_url: str, run: str) -> dict[str, int]:
    async with perper.open_store(store_url) as store:
        records = [meta.value for _, meta in await store.meta_scan("executions")]
        mine = [r for r in records if r["run"] == run or r["run"].startswith(run + ".")]
        calls = [r for r in mine if r["kind"] in CALL_KINDS]
        assert all(r["status"] == "done" for r in mine if r["kind"] != "launcher" or True), [
            (r["id"], r["status"]) for r in mine if r["status"] != "done"
        ]
        for r in calls:
            outcome = [item async for _, item in store.read(r["id"])]
            assert len(outcome) == 1 and "ok" in outcome[0], (r["id"], outcome)
        counts = {"executions": len(mine), "calls": len(calls)}
        for r in mine:
            if r["function"] == "running_sum":
                sums = [item async for _, item in store.read(r["id"])]
                assert sums == [sum(range(i + 1)) for i in range(100)], sums
                counts["sums"] = len(sums)
        return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--store", default=None)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    rng = random.Random(arguments.seed)
    store = arguments.store or f"sqlite:///{ROOT}/.perper/kill-{os.getpid()}.db"
    run = f"kill{arguments.seed}-{os.urandom(3).hex()}"
    started = time.monotonic()
    kills, output = run_with_kills(arguments.app, store, run, arguments.kills, rng)
    counts = asyncio.run(check(store, run))
    lines = [
        line
        for line in output.splitlines()
        if line
        and not line.startswith(("┃", "│", "┏", "┡", "└", "run "))
        and "was killed by signal" not in line
        and "WARNING" not in line
    ]
    print(
        f"{arguments.app} run {run}: {kills} workers SIGKILLed, {time.monotonic() - started:.1f} s"
    )
    print(f"store: {counts}")
    print(f"output: {len(lines)} lines, {len(set(lines))} distinct; first ones:")
    for line in sorted(set(lines), key=lines.index)[:3]:
        print("   ", line)


if __name__ == "__main__":
    main()
