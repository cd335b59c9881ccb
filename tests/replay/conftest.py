"""Shared helpers for replay tests: recording logs, and variants of the examples."""

from __future__ import annotations

import asyncio
import itertools
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from perper.app import App, load_app
from perper.runtime import Runtime
from perper.runtime.records import FAILED
from perper.store.sqlite import SQLiteStore
from tests.conftest import EXAMPLES, ROOT

FIXTURES = ROOT / "fixtures"
BASIC = EXAMPLES / "basic.py"
EFFECTS = EXAMPLES / "effects.py"


def record(
    path: Path,
    app: App,
    params: dict[str, Any] | None = None,
    *,
    run: str = "r",
    batch_size: int = 100,
    expect_failure: bool = False,
) -> Path:
    """Record a run of ``app`` into the SQLite file ``path`` (deterministic effects)."""
    ticks = itertools.count(1_600_000_000.0, 1.0)

    async def body() -> None:
        async with SQLiteStore(path) as store:
            runtime = Runtime(
                store,
                app,
                clock=lambda: next(ticks),
                entropy=random.Random(7),
                batch_size=batch_size,
                flush_delay=3600.0,
            )
            result = await runtime.run(run, params or {})
            if expect_failure:
                assert result.status == FAILED
            else:
                result.raise_on_failure()

    asyncio.run(body())
    return path


def variant(tmp_path: Path, name: str, replacements: dict[str, str], source: Path = BASIC) -> App:
    """Load a copy of an example with text replaced (each replacement must apply)."""
    text = source.read_text()
    for old, new in replacements.items():
        assert old in text, f"{old!r} is not in {source.name}"
        text = text.replace(old, new)
    path = tmp_path / f"{source.stem}_{name}.py"
    path.write_text(text)
    return load_app(path)


def variant_file(
    tmp_path: Path, name: str, replacements: dict[str, str], source: Path = BASIC
) -> Path:
    variant(tmp_path, name, replacements, source)
    return tmp_path / f"{source.stem}_{name}.py"


#: examples/basic.py whose processor doubles values from 50 on.
CHANGED_PROCESSOR = {
    "            yield list(batch)\n            batch.clear()\n    if batch": "            yield [v * 2 if v >= 50 else v for v in batch]\n"
    "            batch.clear()\n    if batch",
}
#: examples/basic.py without its consumer (the launcher no longer starts it).
NO_CONSUMER = {
    "@app.action\nasync def consumer(ctx: perper.Context, source: perper.StreamRef) -> None:\n"
    "    async for batch in ctx.read(source):\n"
    '        ctx.log.info("consumer received %s", batch)\n': "",
    "    await ctx.start(consumer, proc)\n": "",
}
#: examples/basic.py whose processor's parameter batch_size is now called size.
RENAMED_PARAMETER = {
    "source: perper.StreamRef, batch_size: int\n": "source: perper.StreamRef, size: int\n",
    "len(batch) == batch_size": "len(batch) == size",
}


@pytest.fixture
def basic_log(tmp_path: Path) -> Path:
    """A copy of fixtures/basic-clean.db (run 'clean' of examples/basic.py, count 1000)."""
    return Path(shutil.copy(FIXTURES / "basic-clean.db", tmp_path / "basic.db"))


@pytest.fixture
def basic() -> App:
    return load_app(BASIC)
