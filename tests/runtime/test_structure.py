"""The runtime's seams: settings and hooks as values, statuses as enums stored as
plain strings, and execution.py independent of engine.py."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

import perper
from perper.errors import ConfigError
from perper.runtime import Runtime, RuntimeHooks, RuntimeSettings, Status
from perper.runtime.ids import child_stream
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.runtime.settings import PlantedBug, planted_bugs
from perper.store.memory import MemoryStore

RUNTIME = Path(perper.__file__).parent / "runtime"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_execution_does_not_import_the_engine_that_runs_it() -> None:
    assert "perper.runtime.engine" not in imported_modules(RUNTIME / "execution.py")
    assert "perper.runtime.execution" in imported_modules(RUNTIME / "engine.py")


def test_no_runtime_module_reaches_into_private_runtime_attributes_from_outside() -> None:
    for path in [*RUNTIME.glob("*.py"), Path(perper.__file__).parent / "testing" / "recovery.py"]:
        text = path.read_text()
        for private in ("._boundary_hook", "._planted_bugs", "._force_checkpoint_every"):
            assert private not in text, (path.name, private)


def test_statuses_are_enums_in_memory_and_plain_strings_in_the_store() -> None:
    record = ExecutionRecord("r/f-0", "r", "f", "stream", b"\x80").with_status(Status.DONE)
    meta = record.to_meta()
    assert type(meta["status"]) is str and meta["status"] == "done"
    back = ExecutionRecord.from_meta(meta)
    assert back.status is Status.DONE and back == record
    run = RunRecord.from_meta({**RunRecord("r", "a", "main", b"").to_meta(), "status": "failed"})
    assert run.status is Status.FAILED


async def test_a_run_stores_its_statuses_as_the_strings_older_logs_hold() -> None:
    app = perper.App("tiny")

    @app.stream
    async def one(ctx: perper.Context):
        yield 1

    @app.launcher
    async def main(ctx: perper.Context):
        await ctx.start(one)

    store = MemoryStore()
    assert (await Runtime(store, app, entropy=random.Random(0)).run("t")).ok
    run = await store.meta_get("runs", "t")
    execution = await store.meta_get("executions", "t/one-0")
    assert run is not None and type(run.value["status"]) is str
    assert execution is not None and execution.value["status"] == "done"


def test_settings_are_one_frozen_value_with_the_documented_defaults() -> None:
    settings = RuntimeSettings()
    assert (settings.batch_size, settings.lease_ttl, settings.checkpoint_every) == (1000, 2.0, 1000)
    with pytest.raises(AttributeError):
        settings.batch_size = 5  # type: ignore[misc]
    runtime = Runtime(MemoryStore(), perper.App("x"), settings=settings, batch_size=7)
    assert runtime.settings == RuntimeSettings(batch_size=7)
    assert runtime.leases.ttl == settings.lease_ttl


def test_planted_bugs_are_named_values_and_unknown_ones_are_refused() -> None:
    assert planted_bugs(["ignore-fencing"]) == {PlantedBug.IGNORE_FENCING}
    with pytest.raises(ConfigError, match="'ignore-fences' is not one of"):
        planted_bugs(["ignore-fences"])
    with pytest.raises(ConfigError, match="force_checkpoint_every=0"):
        RuntimeHooks(force_checkpoint_every=0)


def test_child_ids_follow_the_documented_scheme() -> None:
    app = perper.App("ids")

    @app.stream
    async def gen(ctx: perper.Context):
        yield 1

    assert child_stream(app, "main", gen, "run", 3) == "run/gen-3"
    assert child_stream(app, "gen", gen, "run/gen-3", 0) == "run/gen-3/gen-0"
