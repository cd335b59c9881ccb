"""bench/simulator.py runs and prints each rate beside its baseline, with the ratios."""

from __future__ import annotations

import re
import subprocess
import sys

from .conftest import ROOT


def test_the_simulator_benchmark_prints_rates_and_ratios_against_asyncio() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "simulator.py"),
            "--seconds",
            "0.2",
            "--log-items",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(r"^loop, 8 tasks with sleep\(0\) only +[\d,]+ steps/s$", out, re.M), out
    assert re.search(r"^asyncio's loop, the same sleep\(0\) tasks +[\d,]+ steps/s$", out, re.M), out
    assert re.search(r"^ratio simulated / asyncio +[\d.]+x$", out, re.M), out
    assert re.search(r"^examples/basic.py count=100, crash faults +[\d,.]+ seeds/s", out, re.M), out
    assert re.search(r"^ratio seeds / runs +[\d.]+x$", out, re.M), out
    # what part of a seed is the runtime's own work under the settings it drew
    assert re.search(
        r"^diagnostic: runs under each seed's drawn settings +[\d,.]+ runs/s "
        r"\(seeds / these [\d.]+x\)$",
        out,
        re.M,
    ), out
    assert re.search(r"^--log examples/clicks.py 200 items, crash +[\d,.]+ seeds/s", out, re.M)
    assert re.search(r"^ratio log seeds / runs +[\d.]+x$", out, re.M), out
