"""Who may still need an ephemeral stream: the rule trimming follows, reader by reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from perper import codec
from perper.app import load_app
from perper.runtime.records import ExecutionRecord, Status
from perper.runtime.retention import Retention
from perper.store.memory import MemoryStore
from perper.streamref import StreamRef
from simulator import Simulation

APP_PATH = Path(__file__).resolve().parents[1] / "simulator" / "apps" / "ephemeral.py"
APP = load_app(APP_PATH)
SOURCE = "r/numbers-0"
ALL = 1 << 62


async def record(
    store: MemoryStore, id: str, function: str, status: Status, params: dict[str, Any]
) -> None:
    parent = None if function == "main" else "r/main"
    kind = "launcher" if function == "main" else "stream"
    entry = ExecutionRecord(id, "r", function, kind, codec.pack(params), parent, status)
    await store.meta_put("executions", id, entry.to_meta())


async def checkpoint(store: MemoryStore, id: str, positions: list[Any], **more: Any) -> None:
    await store.meta_put("checkpoints", id, {"positions": positions, "returned": False, **more})


async def staged(*, launcher: Status = Status.DONE) -> MemoryStore:
    store = MemoryStore()
    await record(store, "r/main", "main", launcher, {})
    await record(store, SOURCE, "numbers", Status.RUNNING, {"count": 40})
    return store


async def needed(store: MemoryStore) -> int | None:
    return await Retention(store, APP).needed_from(SOURCE)


async def test_a_stream_no_execution_reads_is_not_trimmed() -> None:
    assert await needed(await staged()) is None


async def test_nothing_is_trimmed_while_the_starter_may_start_more_readers() -> None:
    store = await staged(launcher=Status.RUNNING)
    await record(store, "r/doubled-1", "doubled", Status.DONE, {"source": StreamRef(SOURCE)})
    assert await needed(store) is None


async def test_a_checkpoint_mode_reader_needs_from_its_checkpointed_position() -> None:
    store = await staged()
    await record(store, "r/doubled-1", "doubled", Status.RUNNING, {"source": StreamRef(SOURCE)})
    assert await needed(store) == 0  # no checkpoint yet
    await checkpoint(store, "r/doubled-1", [[SOURCE, 30, [0, 0, 0], None]])
    assert await needed(store) == 30
    await checkpoint(store, "r/doubled-1", [[SOURCE, 40, [0, 0, 0], [40, 0, 0]]])
    assert await needed(store) == ALL  # its read of the stream has ended
    await checkpoint(store, "r/doubled-1", [], returned=True)
    assert await needed(store) == ALL


async def test_a_checkpoint_that_has_not_opened_the_read_yet_needs_everything() -> None:
    store = await staged()
    await record(store, "r/doubled-1", "doubled", Status.RUNNING, {"source": StreamRef(SOURCE)})
    await checkpoint(store, "r/doubled-1", [["r/other-9", 5, [0, 0, 0], None]])
    assert await needed(store) == 0


@pytest.mark.parametrize("status", [Status.RUNNING, Status.FAILED])
async def test_a_replay_mode_reader_holds_the_whole_stream_until_it_is_done(
    status: Status,
) -> None:
    store = await staged()
    await record(store, "r/doubled-1", "doubled", Status.RUNNING, {"source": StreamRef(SOURCE)})
    await checkpoint(store, "r/doubled-1", [[SOURCE, 30, [0, 0, 0], None]])
    await record(store, "r/tripled-3", "tripled", status, {"source": StreamRef(SOURCE)})
    assert await needed(store) == 0
    await record(store, "r/tripled-3", "tripled", Status.DONE, {"source": StreamRef(SOURCE)})
    assert await needed(store) == 30


async def test_a_reader_this_app_does_not_know_holds_the_whole_stream() -> None:
    store = await staged()
    await record(store, "r/elsewhere-5", "elsewhere", Status.RUNNING, {"x": [StreamRef(SOURCE)]})
    assert await needed(store) == 0


def test_the_ephemeral_app_passes_40_seeds_with_every_fault() -> None:
    result = Simulation(APP).run_seeds(range(40))
    assert result.ok, result.first_failure and result.first_failure.describe()


def test_a_crash_at_every_step_of_the_ephemeral_app_recovers() -> None:
    result = Simulation(APP, {"count": 8}).sweep()
    assert result.ok, result.first_failure and result.first_failure.describe()
