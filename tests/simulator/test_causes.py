"""The simulator names the likely cause of a difference: a direct clock or entropy read,
or an iteration in hash order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from perper.app import load_app
from simulator.causes import likely_causes
from simulator.cli import main

from .conftest import APPS, EXAMPLES, ROOT


def test_a_function_reading_time_time_fails_with_the_wall_clock_named_as_the_cause() -> None:
    result = CliRunner().invoke(main, ["run", str(APPS / "wallclock.py"), "--seeds", "0..3"])
    assert result.exit_code == 1, result.output
    assert "likely cause, in stamped:" in result.output
    assert "time.time() reads the wall clock directly" in result.output
    assert "use ctx.now()" in result.output


def test_iterating_a_set_is_named_as_hash_order_before_the_run() -> None:
    result = CliRunner().invoke(main, ["run", str(APPS / "hashorder.py"), "--seeds", "0..1"])
    assert "warning: tags may not be deterministic:" in result.output, result.output
    assert "hashorder.py:12: iterates a set: its order depends on PYTHONHASHSEED" in result.output


def test_global_randomness_and_uuid4_are_named_and_the_examples_are_clean() -> None:
    import random
    import uuid

    def draws() -> list[object]:
        return [random.random(), uuid.uuid4(), sorted({3, 1})]

    causes = likely_causes(draws)
    assert any("random.random() draws from global randomness" in c for c in causes)
    assert any("uuid.uuid4() reads entropy directly" in c for c in causes)
    assert len(causes) == 2  # sorted(set) is fine
    for path in sorted(EXAMPLES.glob("*.py")):
        if "perper.App(" not in path.read_text():
            continue  # a producer script, not an app
        for function in load_app(path).functions.values():
            assert likely_causes(function.fn) == [], (path, function.name)


def test_output_in_hash_order_fails_against_a_reference_run_under_another_hash_seed() -> None:
    # One process iterates the set the same way every run; the reference runs in a child
    # under another PYTHONHASHSEED (0 here, 1 there: different orders of these strings).
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "run", str(APPS / "hashorder.py"), "--seeds", "0..2"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "output-mismatch" in done.stdout and "function: tags" in done.stdout
    assert "iterates a set: its order depends on PYTHONHASHSEED" in done.stdout


def test_a_sorted_set_passes_under_another_hash_seed(tmp_path: Path) -> None:
    source = (
        (APPS / "hashorder.py").read_text().replace("for tag in seen:", "for tag in sorted(seen):")
    )
    fixed = tmp_path / "sortedtags.py"
    fixed.write_text(source)
    result = CliRunner().invoke(main, ["run", str(fixed), "--seeds", "0..4"])
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output
