"""pytest fixtures and helpers that need only perper (registered by :mod:`perper.testing.plugin`).

* :func:`perper_store` — a fresh, empty store of each kind (one test per kind).
* :func:`seed_shards` — split seeds for ``pytest.mark.parametrize`` so pytest-xdist
  spreads them over its workers.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from perper.errors import ConfigError

if TYPE_CHECKING:
    from perper.store.base import LogStore

__all__ = ["STORE_KINDS", "perper_store", "seed_shards"]


def seed_shards(seeds: Sequence[int] | range, shards: int) -> list[range | list[int]]:
    """Split ``seeds`` into ``shards`` parts for ``pytest.mark.parametrize``, so
    pytest-xdist spreads them over its workers::

        @pytest.mark.parametrize("seeds", seed_shards(range(10_000), 8))
        def test_basic_survives_faults(sim, seeds): sim.run("examples/basic.py", seeds=seeds)
    """
    if shards < 1:
        raise ConfigError(f"seed_shards(shards={shards}): need at least one shard")
    if isinstance(seeds, range) and seeds.step == 1:
        size = math.ceil(len(seeds) / shards)
        return [
            range(seeds.start + i * size, min(seeds.start + (i + 1) * size, seeds.stop))
            for i in range(shards)
            if seeds.start + i * size < seeds.stop
        ]
    listed = list(seeds)
    return [listed[i::shards] for i in range(shards) if listed[i::shards]]


#: The store kinds :func:`perper_store` runs a test against; ``ignite`` joins when
#: ``$PERPER_TEST_IGNITE`` names a node.
STORE_KINDS = ("memory", "sqlite") + (("ignite",) if os.environ.get("PERPER_TEST_IGNITE") else ())


@pytest.fixture(params=STORE_KINDS)
async def perper_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogStore]:
    """A fresh, empty store of each kind (one test per kind)."""
    from perper.store import open_store

    kind = request.param
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        request.applymarker(pytest.mark.ignite)
        # A namespace of its own: the node outlives the test session, tmp_path names repeat.
        url = f"{os.environ['PERPER_TEST_IGNITE']}?namespace=test-{uuid.uuid4().hex}"
    store = open_store(url)
    try:
        yield store
    finally:
        await store.close()
