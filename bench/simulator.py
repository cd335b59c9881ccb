"""Speed of the deterministic simulator beside asyncio's own event loop.

    python bench/simulator.py [--seconds 2] [--log-items 10000]

Three measurements, each beside its baseline in the same run (best rate over ``--seconds``):

* the simulated loop alone: scheduling steps/s of 8 tasks that yield (and, in one line,
  also sleep on timers, which the simulated loop skips over in virtual time), beside
  asyncio's default loop running the same timer-free tasks;
* whole seeds: ``examples/basic.py`` with 100 items under crash faults, seeds/s in one
  process, beside complete runs/s of the same app on asyncio's loop and a MemoryStore
  (and, as a diagnostic, runs/s of the same app on asyncio under the runtime settings
  each seed draws: the part of a seed's cost that is the runtime's own work);
* a recorded run as the workload (``--log``): ``examples/clicks.py`` fed ``--log-items``
  clicks by ``examples/clicks_producer.py``, recorded for real into SQLite first, then
  seeds/s of ``python -m simulator run examples/clicks.py --log`` under crash faults,
  beside runs/s of the same workload (its ingest written first) on asyncio's loop.

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
    parser.add_argument("--log-items", type=int, default=10_000, help="clicks in the recorded run")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    for line in run_bench(args.seconds, log_items=args.log_items):
        print(line)


if __name__ == "__main__":
    main()
