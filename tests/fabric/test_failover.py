"""A 2-node Ignite cluster with one backup keeps every item when a node and a worker die.

It once failed with an exported stream EMPTY: a worker killed while registering a stream
had stored the stream's end hint but not its directory entry (the two were sent at once),
and the worker that took the execution over wrote the whole stream unlisted, so the export
skipped it (tests/store/test_ignite_lost_writes.py has the fault-injected cases). On a
difference the assertion now says what the run, the export and a fresh look at the cluster
saw, so another such failure explains itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perper import fabric
from perper.store import open_store
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.ignite, pytest.mark.slow]

PORT = 10920  # apart from the suite's node and tests/fabric/test_fabric.py's cluster
STREAMS = ["f/generator-0", "f/processor-1", "f/consumer-2"]


def perper(*args: str) -> list[str]:
    return [sys.executable, "-m", "perper.cli", *args]


async def _cluster_view(url: str) -> str:
    """What a fresh process sees of run f: the listing, each stream asked for by name, and
    the executions (status, lease epoch)."""
    lines = []
    async with open_store(url) as store:
        listed = {info.name: info for info in await store.streams(prefix="f/")}
        lines.append(f"listed streams: {sorted(listed)}")
        for name in STREAMS:
            async with open_store(url) as fresh:  # no memory of the listing
                try:
                    lines.append(f"{name}: listed={name in listed} info={await fresh.info(name)}")
                except Exception as error:  # reported, not handled
                    lines.append(f"{name}: info raised {error!r}")
        for table in ("executions", "leases"):
            for key, entry in await store.meta_scan(table, prefix="f/"):
                value = entry.value
                shown = {k: value.get(k) for k in ("status", "epoch", "owner") if k in value}
                lines.append(f"{table} {key}: {shown}")
    return "\n".join(lines)


def cluster_view(url: str) -> str:
    try:
        return asyncio.run(_cluster_view(url))
    except Exception as error:  # a diagnostic must not hide the failure
        return f"(the cluster could not be inspected: {error!r})"


def node_events(work: Path) -> str:
    """The lines of the node logs about failed nodes, lost partitions and rebalancing."""
    marks = ("Node FAILED", "lost", "LOST", "Completed (final) rebalancing", "perper-fabric")
    found = []
    for log in sorted(work.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if any(mark in line for mark in marks):
                found.append(f"{log.name}: {line[:200]}")
    return "\n".join(found[-40:])


def test_killing_a_worker_and_a_node_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    work = tmp_path / "cluster"
    fabric.start(
        port=PORT,
        work_dir=work,
        nodes=2,
        discovery_port=47620,
        communication_port=47220,
        persistence=False,
    )
    try:
        url = f"ignite://127.0.0.1:{PORT},127.0.0.1:{PORT + 1}?namespace=failover"
        basic = str(EXAMPLES / "basic.py")
        args = ["--run", "f", "--param", "count=150000", "-q"]
        run_log = tmp_path / "run.log"
        with run_log.open("w") as output:
            parent = subprocess.Popen(
                perper("run", basic, "--workers", "2", "--store", url, "--lease-ttl", "1", *args),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            workers: list[str] = []
            while len(workers) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
                workers = subprocess.run(
                    ["pgrep", "-P", str(parent.pid)], capture_output=True, text=True
                ).stdout.split()
            time.sleep(1.5)  # mid-run
            assert parent.poll() is None, "the run ended before anything was killed"
            os.kill(int(workers[0]), signal.SIGKILL)
            fabric.kill_node(1, port=PORT, work_dir=work)
            assert parent.wait(timeout=300) == 0, run_log.read_text()
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()
        exported = subprocess.run(
            perper("export", url, str(tmp_path / "f.sqlite"), "--run", "f"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert exported.returncode == 0, exported.stderr
        reference = subprocess.run(
            perper("run", basic, "--store", f"sqlite:///{tmp_path / 'ref.db'}", *args),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert reference.returncode == 0, reference.stderr
        for stream in STREAMS:
            ours, theirs = (
                subprocess.run(
                    perper("streams", "cat", stream, "--store", f"sqlite:///{db}"),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                for db in (tmp_path / "f.sqlite", tmp_path / "ref.db")
            )
            # On a difference: what the cats, the export and the run printed, and what the
            # surviving node holds (while it still runs).
            assert ours.stdout == theirs.stdout, (
                f"{stream}: the export has {len(ours.stdout.splitlines())} items, the "
                f"reference {len(theirs.stdout.splitlines())}; cat of the export said "
                f"{ours.stderr!r}, of the reference {theirs.stderr!r}; the export printed "
                f"{exported.stdout!r} {exported.stderr!r}\n"
                f"--- the run printed:\n{run_log.read_text()}\n"
                f"--- the cluster now:\n{cluster_view(url)}\n"
                f"--- the nodes' logs:\n{node_events(work)}"
            )
        assert len(ours.stdout.splitlines()) == 0 and stream == "f/consumer-2"
    finally:
        fabric.stop(port=PORT, work_dir=work)
