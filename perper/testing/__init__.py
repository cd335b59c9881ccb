"""Testing helpers that need only perper: recorded logs as tests, crash-recovery checks.

* :func:`assert_replays` — replay a recorded log with today's code; fail on divergence.
* :func:`check_recoverable` — crash a function at every item boundary, compare outputs.
* :func:`items`, :func:`input_logs` — Hypothesis strategies (``pip install 'perper[testing]'``).
* :func:`seed_shards` and the ``perper_store`` fixture (:mod:`perper.testing.fixtures`).
* ``perper.testing.plugin`` — the pytest plugin (registered by the ``pytest11`` entry
  point): the ``ignite`` marker, ``perper_store``, and ``--perper-replay-dir DIR``, which
  collects every log in DIR as tests, one per recorded execution.

The simulator-backed helpers (``run_function``, ``DeploymentMachine``, the ``sim``
fixture) are in :mod:`simulator.testing`: perper never imports the simulator.

Names are imported on first use, so ``import perper.testing`` (and the pytest plugin)
costs nothing and needs neither pytest nor Hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perper.errors import RecoveryError, ReplayDivergedError
    from perper.testing.fixtures import seed_shards
    from perper.testing.recovery import RecoveryCheck, RecoveryDivergence, check_recoverable
    from perper.testing.replay import assert_replays, assert_replays_async
    from perper.testing.strategies import input_logs, items

_WHERE = {
    "RecoveryCheck": "perper.testing.recovery",
    "RecoveryDivergence": "perper.testing.recovery",
    "RecoveryError": "perper.errors",
    "ReplayDivergedError": "perper.errors",
    "assert_replays": "perper.testing.replay",
    "assert_replays_async": "perper.testing.replay",
    "check_recoverable": "perper.testing.recovery",
    "input_logs": "perper.testing.strategies",
    "items": "perper.testing.strategies",
    "seed_shards": "perper.testing.fixtures",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'perper.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "RecoveryCheck",
    "RecoveryDivergence",
    "RecoveryError",
    "ReplayDivergedError",
    "assert_replays",
    "assert_replays_async",
    "check_recoverable",
    "input_logs",
    "items",
    "seed_shards",
]
