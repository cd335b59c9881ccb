"""LogStore.write_group: a call's records in one write, concurrent groups committed
together (on SQLite, one transaction with a savepoint per group)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from perper.store import LogStore
from perper.store.base import MetaWrite, SegmentWrite, encode_segment
from perper.store.sqlite import SQLiteStore


def outcome(stream: str, value: int, *, epoch: int = 3) -> SegmentWrite:
    return SegmentWrite(stream, 0, 1, encode_segment([{"ok": value}]), epoch, seal=True)


async def test_a_group_write_lands_its_segments_seal_and_records(store: LogStore) -> None:
    effects = SegmentWrite("r/f-0#effects", 0, 2, encode_segment([["random", 0.5], 1]), 3)
    written = await store.write_group(
        [effects, outcome("r/f-0", 7)], [MetaWrite("executions", "r/f-0", {"status": "done"})]
    )
    assert written
    assert [item async for _, item in store.read("r/f-0")] == [{"ok": 7}]
    info = await store.info("r/f-0")
    assert (info.head, info.sealed, info.epoch) == (1, True, 3)
    assert (await store.info("r/f-0#effects")).head == 2
    entry = await store.meta_get("executions", "r/f-0")
    assert entry is not None and entry.value == {"status": "done"}


async def test_a_group_write_at_a_moved_head_or_a_taken_key_is_refused(store: LogStore) -> None:
    assert await store.write_group([outcome("r/g-0", 1)])
    assert not await store.write_group([outcome("r/g-0", 2)])
    assert [item async for _, item in store.read("r/g-0")] == [{"ok": 1}]
    await store.meta_cas("executions", "r/h-0", {"status": "running"}, version=0)
    assert not await store.write_group([], [MetaWrite("executions", "r/h-0", {"status": "x"})])
    entry = await store.meta_get("executions", "r/h-0")
    assert entry is not None and entry.value == {"status": "running"}


async def test_sqlite_commits_concurrent_groups_together_and_undoes_only_a_refused_one(
    tmp_path: Path,
) -> None:
    async with SQLiteStore(tmp_path / "groups.db") as store:
        await store.meta_cas("executions", "r/c-1", {"status": "running"}, version=0)
        groups = [
            ([outcome(f"r/c-{i}", i)], [MetaWrite("executions", f"r/c-{i}", {"status": "done"})])
            for i in range(3)
        ]
        written = await asyncio.gather(*(store.write_group(s, m) for s, m in groups))
        assert written == [True, False, True]
        # The refused group wrote nothing, not even its outcome (one savepoint each).
        assert (await store.info("r/c-1")).head == 0
        for i in (0, 2):
            assert [item async for _, item in store.read(f"r/c-{i}")] == [{"ok": i}]
    async with SQLiteStore(tmp_path / "groups.db") as reopened:  # and it was committed
        assert (await reopened.info("r/c-2")).sealed
        entry = await reopened.meta_get("executions", "r/c-2")
        assert entry is not None and entry.value == {"status": "done"}
