"""Testing helpers.

* :func:`check_recoverable` — crash a function at every item boundary, compare outputs.
"""

from perper.testing.recovery import (
    RecoveryCheck,
    RecoveryDivergence,
    RecoveryError,
    check_recoverable,
)

__all__ = ["RecoveryCheck", "RecoveryDivergence", "RecoveryError", "check_recoverable"]
