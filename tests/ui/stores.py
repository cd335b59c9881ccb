"""Stores with known runs for the UI tests, made with the real runtime."""

from __future__ import annotations

import random
from pathlib import Path

import perper
from perper.app import load_app
from perper.store.sqlite import SQLiteStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FAILING_APP = Path(__file__).with_name("failing_app.py")

#: (run, app file, launcher parameters) of the runs make_known_runs records.
KNOWN_RUNS = (
    ("basic-small", EXAMPLES / "basic.py", {"count": 20}),
    ("cycle-10", EXAMPLES / "cycle.py", {"bound": 10}),
    ("broken", FAILING_APP, {"count": 5}),
)


async def make_known_runs(path: Path) -> None:
    """Record the runs of KNOWN_RUNS into the SQLite log at ``path``."""
    store = SQLiteStore(path)
    try:
        for run, app_file, params in KNOWN_RUNS:
            app = load_app(app_file)
            runtime = perper.Runtime(
                store, app, clock=lambda: 1_700_000_000.0, entropy=random.Random(7)
            )
            await runtime.run(run, params)
    finally:
        await store.close()
