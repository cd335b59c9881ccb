"""A 2-node Ignite cluster with one backup keeps every item when a node and a worker die."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perper import fabric
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.ignite, pytest.mark.slow]

PORT = 10920  # apart from the suite's node and tests/fabric/test_fabric.py's cluster


def perper(*args: str) -> list[str]:
    return [sys.executable, "-m", "perper.cli", *args]


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
        parent = subprocess.Popen(
            perper("run", basic, "--workers", "2", "--store", url, "--lease-ttl", "1", *args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
            assert parent.wait(timeout=300) == 0
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
        for stream in ["f/generator-0", "f/processor-1", "f/consumer-2"]:
            ours, theirs = (
                subprocess.run(
                    perper("streams", "cat", stream, "--store", f"sqlite:///{db}"),
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                for db in (tmp_path / "f.sqlite", tmp_path / "ref.db")
            )
            # On a difference, say what the cat of each log and the export printed.
            assert ours.stdout == theirs.stdout, (
                f"{stream}: cat of the export said {ours.stderr!r}, of the reference "
                f"{theirs.stderr!r}; the export printed {exported.stdout!r} {exported.stderr!r}"
            )
        assert len(ours.stdout.splitlines()) == 0 and stream == "f/consumer-2"
    finally:
        fabric.stop(port=PORT, work_dir=work)
