"""The agents examples and the agents commands, run as a user runs them: in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES

AGENTS = EXAMPLES / "agents"


def perper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def agents(cwd: Path) -> dict[str, dict[str, object]]:
    listed = perper("agents", "ls", "--json", cwd=cwd)
    assert listed.returncode == 0, listed.stderr
    return {row["instance"]: row for row in json.loads(listed.stdout)}


def test_the_calls_example_prints_each_result_and_a_rerun_makes_no_new_calls(
    tmp_path: Path,
) -> None:
    ran = perper("run", str(AGENTS / "calls.py"), "--run", "c1", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    number = re.search(r"^random_number\(1, 100\) -> (\d+)$", ran.stdout, re.M)
    assert number and 1 <= int(number.group(1)) <= 100
    numbers = re.search(r"^random_numbers\(5, 1, 100\) -> \[(.*)\]$", ran.stdout, re.M)
    assert numbers and len(numbers.group(1).split(",")) == 5
    assert "count_params([1..7]) -> 7" in ran.stdout
    assert "do_something('hello') -> None" in ran.stdout
    assert "do_something_async('world') -> None" in ran.stdout
    before = agents(tmp_path)["c1"]
    assert before["calls_served"] == 5
    again = perper("run", str(AGENTS / "calls.py"), "--run", "c1", "-q", cwd=tmp_path)
    assert again.returncode == 0 and "already done" in again.stderr
    # The done run is replayed read-only: the same lines, and no new call executions.
    printed = [line for line in ran.stdout.splitlines() if " -> " in line]
    assert [line for line in again.stdout.splitlines() if " -> " in line] == printed
    assert "today's code reproduces the run" in again.stderr
    assert agents(tmp_path)["c1"] == before


def test_the_container_example_checks_127_answers_and_destroys_both(tmp_path: Path) -> None:
    ran = perper("run", str(AGENTS / "usage.py"), "--run", "u1", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[:2] == [
        "127 calls answered correctly (63 by container 0, 64 by container 1)",
        "destroyed 2 containers",
    ]
    rows = agents(tmp_path)
    assert [(rows[i]["app"], rows[i]["status"], rows[i]["parent"]) for i in sorted(rows)] == [
        ("usage", "done", ""),
        ("container", "destroyed", "u1/main"),
        ("container", "destroyed", "u1/main"),
    ]
    served = rows["u1.container-0"]["calls_served"], rows["u1.container-1"]["calls_served"]
    assert served == (63 + 1, 64 + 1)  # test() calls and one @app.stop each


def test_the_sums_example_prints_the_running_sums_and_perper_call_answers_from_outside(
    tmp_path: Path,
) -> None:
    ran = perper("run", str(AGENTS / "sums.py"), "--run", "s1", "-q", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:100] == [str(sum(range(i + 1))) for i in range(100)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "perper.cli", "worker", str(AGENTS / "sums.py"), "-q"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        first = perper(
            "call", "s1.generator-0", "stream", "--key", "k", "--timeout", "60", cwd=tmp_path
        )
        again = perper(
            "call", "s1.generator-0", "stream", "--key", "k", "--timeout", "60", cwd=tmp_path
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"__stream__": "s1.generator-0/numbers-0"}
    assert again.stdout == first.stdout
    assert agents(tmp_path)["s1.generator-0"]["calls_served"] == 2  # from main, and k once
