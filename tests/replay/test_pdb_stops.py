"""``perper replay --pdb`` opens in the user's function, at seq 0 too, and stops at a
divergence that comes before ``--until``."""

from __future__ import annotations

import re
from pathlib import Path

from tests.replay.conftest import BASIC, CHANGED_PROCESSOR, variant_file
from tests.replay.test_cli_replay import perper


def test_pdb_with_until_0_opens_in_the_function_not_in_asyncio(
    basic_log: Path, tmp_path: Path
) -> None:
    done = perper(
        "replay",
        basic_log,
        BASIC,
        "--function",
        "processor",
        "--until",
        "0",
        "--pdb",
        cwd=tmp_path,
        stdin="c\n",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is about to compute the item at seq 0" in done.stdout
    stops = re.findall(r"^> (.*)$", done.stdout, re.MULTILINE)
    assert stops and all("basic.py" in stop and "processor()" in stop for stop in stops), stops
    assert "asyncio" not in done.stdout


def test_pdb_stops_at_a_divergence_that_comes_before_until(basic_log: Path, tmp_path: Path) -> None:
    changed = variant_file(tmp_path, "changed", CHANGED_PROCESSOR)
    done = perper(
        "replay",
        basic_log,
        changed,
        "--function",
        "processor",
        "--until",
        "30",
        "--pdb",
        cwd=tmp_path,
        stdin="p batch\nc\n",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "about to compute the item at seq 16 (the first divergence)" in done.stdout
    assert "[45, 46, 47]" in done.stdout  # the batch just yielded as seq 15
