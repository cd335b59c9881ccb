"""Speed of the deterministic simulator beside asyncio's own event loop.

    python bench/simulator.py [--seconds 2]

Two measurements, each beside its baseline in the same run (best rate over ``--seconds``):

* the simulated loop alone: scheduling steps/s of 8 tasks that yield (and, in one line,
  also sleep on timers, which the simulated loop skips over in virtual time), beside
  asyncio's default loop running the same timer-free tasks;
* whole seeds: ``examples/basic.py`` with 100 items under crash faults, seeds/s in one
  process, beside complete runs/s of the same app on asyncio's loop and a MemoryStore.

The same lines as ``python -m simulator bench``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.bench import run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    for line in run_bench(args.seconds):
        print(line)


if __name__ == "__main__":
    main()
