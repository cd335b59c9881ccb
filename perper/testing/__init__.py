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

__all__ = [
    "RecoveryCheck",
    "RecoveryDivergence",
    "RecoveryError",
    "ReplayDivergedError",
    "assert_replays",
    "assert_replays_async",
    "check_recoverable",
]
