"""Shared fixtures: a store of every kind, and the path of the examples."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from perper.store import LogStore, open_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Store kinds every contract test runs against. "ignite" joins when a node is up.
STORE_KINDS = ["memory", "sqlite"]
if os.environ.get("PERPER_TEST_IGNITE"):
    STORE_KINDS.append("ignite")


def store_url(kind: str, tmp_path: Path, name: str = "store") -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / (name + '.db')}"
    # One node serves every test: a namespace per test keeps their streams apart.
    # tmp_path names repeat from one session to the next; its full path hashed does not.
    unique = hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
    return f"{os.environ['PERPER_TEST_IGNITE']}?namespace={unique}-{name}"


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "ignite":
        request.applymarker(pytest.mark.ignite)
    return str(request.param)


@pytest.fixture
async def store(store_kind: str, tmp_path: Path) -> AsyncIterator[LogStore]:
    """A fresh, empty store of each kind."""
    opened = open_store(store_url(store_kind, tmp_path))
    try:
        yield opened
    finally:
        await opened.close()
