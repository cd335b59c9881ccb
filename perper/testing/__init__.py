"""Testing helpers: recorded logs as regression tests, and crash-recovery checks.

* :func:`assert_replays` — replay a recorded log with today's code; fail on divergence.
* :func:`check_recoverable` — crash a function at every item boundary, compare outputs.
* ``perper.testing.plugin`` — a pytest plugin: ``--perper-replay-dir DIR`` collects every
  log in DIR as tests, one per recorded execution.
"""

from perper.replay.results import ReplayDivergedError
from perper.testing.recovery import (
    RecoveryCheck,
    RecoveryDivergence,
    RecoveryError,
    check_recoverable,
)
from perper.testing.replay import assert_replays, assert_replays_async

# The simulation helpers need pytest and Hypothesis (pip install 'perper[testing]'):
# imported on first use, so `import perper.testing` works without them. Their pytest
# fixtures `sim` and `perper_store` register with `pytest_plugins =
# ["perper.testing.simulation"]` in a conftest.py.
_SIMULATION = (
    "DeploymentMachine",
    "SimHelper",
    "input_logs",
    "items",
    "run_function",
    "seed_shards",
)


def __getattr__(name: str) -> object:
    if name in _SIMULATION:
        from perper.testing import simulation

        return getattr(simulation, name)
    raise AttributeError(f"module 'perper.testing' has no attribute {name!r}")


__all__ = [
    "DeploymentMachine",
    "RecoveryCheck",
    "RecoveryDivergence",
    "RecoveryError",
    "ReplayDivergedError",
    "SimHelper",
    "assert_replays",
    "assert_replays_async",
    "check_recoverable",
    "input_logs",
    "items",
    "run_function",
    "seed_shards",
]
