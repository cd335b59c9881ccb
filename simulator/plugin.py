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


@pytest.fixture
def sim() -> SimHelper:
    """Simulate apps under faults: ``sim.run(app, seeds=range(200))``."""
    from simulator.testing import SimHelper

    return SimHelper()
