"""A new user's likely mistakes get an error that names the value and the fix, not a hang."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLES
from tests.docs.test_samples import perper_cli

BASIC = str(EXAMPLES / "basic.py")


def test_workers_on_a_memory_store_are_refused_instead_of_waiting_forever(tmp_path: Path) -> None:
    ran = perper_cli(
        "run", BASIC, "--workers", "2", "--store", "memory://", cwd=tmp_path, timeout=30
    )
    assert ran.returncode == 2
    assert "--workers 2" in ran.stderr and "'memory://'" in ran.stderr
    assert "sqlite:///PATH.db" in ran.stderr and "drop --workers" in ran.stderr


def test_a_worker_on_a_memory_store_is_refused(tmp_path: Path) -> None:
    ran = perper_cli("worker", BASIC, "--store", "memory://", cwd=tmp_path, timeout=30)
    assert ran.returncode == 2
    assert "'memory://'" in ran.stderr and "sqlite:///PATH.db" in ran.stderr


def test_a_call_nobody_serves_times_out_saying_a_worker_runs_it(tmp_path: Path) -> None:
    calls = str(EXAMPLES / "agents" / "calls.py")
    assert perper_cli("run", calls, "--run", "c1", "-q", cwd=tmp_path).returncode == 0
    ran = perper_cli(
        "call", "c1", "random_number", "--param", "low=1", "--param", "high=6",
        "--timeout", "0.5", cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "within 0.5 s" in ran.stderr
    assert "'perper worker APP.py' serving the app of run 'c1'" in ran.stderr
