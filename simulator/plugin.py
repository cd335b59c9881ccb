"""pytest plugin of the simulator (entry point ``simulator``): the ``sim`` fixture.

Registered through the ``pytest11`` entry point, so a test takes ``sim`` as an argument
with no conftest line. The simulator is imported only when a test uses the fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from simulator.testing import SimHelper

__all__ = ["sim"]


@pytest.fixture(scope="session")
def sim() -> SimHelper:
    """Simulate apps under faults: ``sim.run(app, seeds=range(200))``.

    Session-scoped: the helper holds no state between calls, so one instance serves every
    test, and a test decorated with Hypothesis' ``@given`` may take it (a function-scoped
    fixture would trip Hypothesis' ``function_scoped_fixture`` health check).
    """
    from simulator.testing import SimHelper

    return SimHelper()
