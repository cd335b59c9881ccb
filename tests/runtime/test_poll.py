"""The work loop's poll over raw execution rows: what it decodes, and what it still refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from perper.app import load_app
from perper.errors import FormatError
from perper.runtime import Runtime
from perper.runtime.ids import DONE, FAILED, RUNNING, Status
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.store.memory import MemoryStore
from tests.conftest import EXAMPLES

basic = load_app(EXAMPLES / "basic.py")

GOOD = ExecutionRecord("r/x", "r", "generator", "stream", b"\x80", "r/main", RUNNING, None)


@pytest.mark.parametrize(
    "record",
    [
        GOOD,
        ExecutionRecord("r/main", "r", "main", "launcher", b"\x80"),
        ExecutionRecord("r/x", "r", "generator", "stream", b"", "r/main", FAILED, "Traceback"),
        ExecutionRecord("r/x", "r", "generator", "stream", b"", "r/main", DONE),
        ExecutionRecord("r/x", "r", "generator", "stream", b"", "r/main", Status.CANCELLED),
    ],
)
def test_a_record_reads_back_as_written_with_its_status_an_enum(record: ExecutionRecord) -> None:
    back = ExecutionRecord.from_meta(record.to_meta())
    assert back == record
    assert type(back.status) is type(record.status)


def test_a_run_record_is_stored_in_the_shape_asdict_gave() -> None:
    record = RunRecord("r", "a", "main", b"\x80", FAILED, 12.5)
    meta = record.to_meta()
    assert list(meta) == ["name", "app", "launcher", "params", "status", "started"]
    assert meta["status"] == "failed" and type(meta["status"]) is str
    assert RunRecord.from_meta(meta) == record


# Rows of all eight fields, so that each is looked at where a well-formed one is read.
CORRUPT: dict[str, dict[str, Any]] = {
    "an id that is not a string": {**GOOD.to_meta(), "id": 5},
    "params that are not bytes": {**GOOD.to_meta(), "params": "x"},
    "a parent that is a number": {**GOOD.to_meta(), "parent": 3},
    "an error that is a list": {**GOOD.to_meta(), "error": ["x"]},
    "an unknown status": {**GOOD.to_meta(), "status": "dune"},
    "a status that is a list": {**GOOD.to_meta(), "status": ["running"]},
    "an unknown field for the parent": {
        **{k: v for k, v in GOOD.to_meta().items() if k != "parent"},
        "parnet": "r/main",
    },
}


@pytest.mark.parametrize("shape", sorted(CORRUPT))
def test_a_corrupt_row_of_eight_fields_is_a_format_error_naming_it(shape: str) -> None:
    with pytest.raises(FormatError, match=r"the executions row 'r/x' is corrupt"):
        ExecutionRecord.from_meta(CORRUPT[shape], "r/x")


async def test_a_corrupt_running_row_the_poll_meets_is_a_format_error_naming_its_key() -> None:
    store = MemoryStore()
    runtime = Runtime(store, basic, worker_id="w")
    await runtime.prepare_run("r", {"count": 3})
    # Written after the run (re)started, so only the work loop's poll can meet it; its
    # id field is no string, so only the row's key can name it.
    await store.meta_cas("executions", "r/x", CORRUPT["an id that is not a string"], version=0)
    with pytest.raises(FormatError, match=r"the executions row 'r/x' is corrupt"):
        await runtime.work(run="r")
    assert await store.meta_get("leases", "r/x") is None  # never claimed: checked first


async def test_an_idle_worker_decodes_a_running_row_it_cannot_claim_once_per_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = MemoryStore()
    holder = Runtime(store, basic, worker_id="holder", lease_ttl=60.0)
    await holder.prepare_run("r", {"count": 3})
    assert await holder.leases.claim("r/main") == 1  # held, by a worker that stays silent
    idle = Runtime(store, basic, worker_id="idle", lease_ttl=60.0, poll_interval=0.001)

    decoded: list[str | None] = []
    tried: list[str] = []
    from_meta = ExecutionRecord.from_meta
    declines = idle.leases.declines

    def counting_from_meta(value: Any, key: str | None = None) -> ExecutionRecord:
        decoded.append(key)
        return from_meta(value, key)

    def counting_declines(execution: str, entry: Any, **kwargs: Any) -> bool:
        # What each poll asks of a lease row it read (no claim coroutine for a held one).
        tried.append(execution)
        return declines(execution, entry, **kwargs)

    monkeypatch.setattr(ExecutionRecord, "from_meta", staticmethod(counting_from_meta))
    monkeypatch.setattr(idle.leases, "declines", counting_declines)
    stop = asyncio.Event()
    working = asyncio.create_task(idle.work(run="r", stop=stop))
    async with asyncio.timeout(20):
        while len(tried) < 5:
            await asyncio.sleep(0.001)
    stop.set()
    assert await working is None
    assert set(tried) == {"r/main"}  # every poll tried the lease, and none got it
    assert decoded.count("r/main") == 1

    # A new version of the row is checked again.
    entry = await store.meta_get("executions", "r/main")
    assert entry is not None
    await store.meta_cas("executions", "r/main", entry.value, version=entry.version)
    tried.clear()
    stop = asyncio.Event()
    working = asyncio.create_task(idle.work(run="r", stop=stop))
    async with asyncio.timeout(20):
        while len(tried) < 3:
            await asyncio.sleep(0.001)
    stop.set()
    assert await working is None
    assert decoded.count("r/main") == 2
