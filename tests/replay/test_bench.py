"""bench/replay.py runs and prints both rates and their ratio."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_the_replay_benchmark_prints_replay_and_plain_rates_and_the_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replay.py"), "--items", "20000", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^replay .* [\d,]+ items/s$", done.stdout, re.M)
    assert re.search(r"^plain .* [\d,]+ items/s$", done.stdout, re.M)
    assert re.search(r"^ratio .* [\d.]+x$", done.stdout, re.M)
