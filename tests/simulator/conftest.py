"""Fixtures of the simulator's tests: the plugins' ones, and app paths."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

# Registered by the pytest11 entry points too; named here so an older install works.
from perper.testing.fixtures import perper_store  # noqa: F401 - fixture
from simulator.plugin import sim  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(autouse=True)
def quiet_runtime_logs() -> Iterator[None]:
    """Lost leases and stopped executions are routine under faults; keep them quiet."""
    logger = logging.getLogger("perper")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
