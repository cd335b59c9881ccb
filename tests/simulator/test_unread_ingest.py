"""A recorded run's ingest stream that nothing reads is still written in full by the
simulated producer before the world ends (the run finishing first made the checker
report "'r/notes' ends with 0 items" on some seeds)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from click.testing import CliRunner

from perper.app import load_app
from perper.runtime import Runtime
from perper.store import open_store
from perper.store.mirror import copy_store
from simulator.cli import main

from .conftest import APPS

APP = APPS / "unread_ingest.py"


async def record(tmp_path: Path) -> Path:
    app = load_app(str(APP))
    log = tmp_path / "run.sqlite"
    async with open_store(f"sqlite:///{tmp_path / 'prod.db'}") as store:
        # Six notes in three batches, sealed, before the run starts; nothing reads them.
        for first in range(0, 6, 2):
            await store.append("r/notes", first, [f"note {first}", f"note {first + 1}"])
        await store.seal("r/notes")
        runtime = Runtime(store, app, entropy=random.Random(0))
        (await runtime.run("r", {"count": 3})).raise_on_failure()
        async with open_store(f"sqlite:///{log}") as dest:
            await copy_store(store, dest, run="r")
    return log


def test_a_sealed_ingest_stream_nobody_reads_is_fed_in_full_on_every_seed(
    tmp_path: Path,
) -> None:
    log = asyncio.run(record(tmp_path))
    result = CliRunner().invoke(
        main, ["run", str(APP), "--log", str(log), "--seeds", "0..60"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "61 seeds run, 0 failures" in result.output
