"""The issue's acceptance checks, at full size: a 100,000-item run of examples/basic.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.replay.conftest import BASIC, NO_CONSUMER, RENAMED_PARAMETER

COUNT = 100_000


def perper(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_of_basic(tmp_path: Path, name: str, replacements: dict[str, str]) -> Path:
    text = BASIC.read_text()
    for old, new in replacements.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_100k_run_replays_clean_diverges_when_changed_and_refuses_when_unfit(
    tmp_path: Path,
) -> None:
    log = tmp_path / "run.sqlite"
    recorded = perper(
        "run",
        BASIC,
        "--store",
        f"sqlite:///{log}",
        "--run",
        "prod",
        "--param",
        f"count={COUNT}",
        "-q",
        cwd=tmp_path,
    )
    assert recorded.returncode == 0, recorded.stderr

    clean = perper("replay", log, BASIC, cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    changed = copy_of_basic(
        tmp_path,
        "changed",
        {
            "            yield list(batch)\n            batch.clear()\n    if batch": "            yield [v + 1 if v >= 50_000 else v for v in batch]\n"
            "            batch.clear()\n    if batch"
        },
    )
    diverged = perper("replay", log, changed, cwd=tmp_path)
    assert diverged.returncode == 1, diverged.stdout + diverged.stderr
    out = diverged.stdout
    assert "prod/processor-1 diverged" in out
    assert "function:  processor" in out
    assert "seq:       16666" in out  # [49998, 49999, 50000] is batch 16666
    assert "expected:  [49998, 49999, 50000]" in out
    assert "actual:    [49998, 49999, 50001]" in out
    assert "inputs consumed: prod/generator-0 at 50001" in out

    removed = perper("replay", log, copy_of_basic(tmp_path, "removed", NO_CONSUMER), cwd=tmp_path)
    assert removed.returncode == 2
    assert "prod/consumer-2 cannot be replayed" in removed.stdout
    assert "has no function 'consumer'" in removed.stdout

    unfit = copy_of_basic(tmp_path, "unfit", RENAMED_PARAMETER)
    refused = perper("replay", log, unfit, "--function", "processor", cwd=tmp_path)
    assert refused.returncode == 2
    assert "no longer fit its signature" in refused.stdout
