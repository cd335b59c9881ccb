"""Ephemeral streams in a running pipeline: trimmed behind their readers, never ahead."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.errors import ConfigError
from perper.runtime import Runtime, RuntimeSettings
from perper.runtime.leases import Lease
from perper.store import LogStore
from perper.store.memory import MemoryStore
from perper.store.sqlite import SQLiteStore
from tests.retention.pipeline import build_app, expected_totals

COUNT = 5000
SETTINGS = RuntimeSettings(batch_size=100)


class Crash(BaseException):
    """The worker dies here (like kill -9: no cleanup runs)."""


class Watched:
    """Mixin: after each segment write, note how many items the store holds in all."""

    most = 0
    crashed: asyncio.Event
    crash_at_checkpoint: int | None = None
    _checkpoints = 0

    def stored(self) -> int:
        raise NotImplementedError

    def note(self) -> None:
        self.most = max(self.most, self.stored())

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        await super().write_segment(stream, seq, count, data, epoch)  # type: ignore[misc]
        self.note()

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        self.crash_now(table)
        return await super().meta_cas(table, key, value, version=version)  # type: ignore[misc,no-any-return]

    def crash_now(self, table: str) -> None:
        if table == "checkpoints" and self.crash_at_checkpoint is not None:
            self._checkpoints += 1
            if self._checkpoints == self.crash_at_checkpoint:
                self.crash_at_checkpoint = None
                self.crashed.set()
                raise Crash()


class WatchedMemory(Watched, MemoryStore):
    def stored(self) -> int:
        return sum(count for s in self._streams.values() for count, _ in s.data)


class WatchedSQLite(Watched, SQLiteStore):
    def stored(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(count), 0) FROM segments").fetchone()[0])


async def crashed_run(store: Any, running: Any) -> None:
    """Run the coroutine ``running`` until ``store`` crashes it, then kill the worker:
    none of its tasks runs on, and its leases are free as their expiry would make them."""
    store.crashed = asyncio.Event()
    first = asyncio.ensure_future(running)
    await asyncio.wait_for(store.crashed.wait(), 30)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert first in others
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    for key, entry in await store.meta_scan("leases"):
        freed = Lease(None, Lease.from_meta(entry.value).epoch).to_meta()
        await store.meta_cas("leases", key, freed, version=entry.version)


def watched(kind: str, tmp_path: Path) -> WatchedMemory | WatchedSQLite:
    return WatchedMemory() if kind == "memory" else WatchedSQLite(tmp_path / "store.db")


async def run(store: LogStore, app: perper.App, count: int = COUNT) -> Any:
    runtime = Runtime(store, app, settings=SETTINGS, clock=lambda: 0.0, entropy=random.Random(0))
    return await runtime.run("r", {"count": count})


async def totals(store: LogStore) -> list[Any]:
    return [item async for _, item in store.read("r/total-2")]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_an_ephemeral_pipeline_stays_bounded_and_computes_what_a_kept_one_does(
    kind: str, tmp_path: Path
) -> None:
    store = watched(kind, tmp_path)
    try:
        result = await run(store, build_app())
        assert result.status == "done"
        assert await totals(store) == expected_totals(COUNT)
        assert store.most < 1000, f"the store held {store.most} items at once"
        assert await store.first_seq("r/numbers-0") == COUNT
        assert await store.first_seq("r/doubled-1") == COUNT
        assert await store.first_seq("r/total-2") == 0  # kept: not ephemeral
    finally:
        await store.close()
    kept = watched(kind, tmp_path / "kept")
    try:
        await run(kept, build_app(retention="keep"))
        assert await totals(kept) == expected_totals(COUNT)
        assert kept.most >= 2 * COUNT  # what the bound above is measured against
    finally:
        await kept.close()


async def test_a_replay_mode_reader_keeps_its_input_until_it_is_done() -> None:
    store = WatchedMemory()
    await run(store, build_app(recovery="replay"))
    assert await totals(store) == expected_totals(COUNT)
    # doubled re-reads numbers from seq 0 on recovery: nothing of numbers went before the end.
    assert store.most >= COUNT
    assert await store.first_seq("r/numbers-0") == COUNT  # trimmed once doubled was done


async def test_a_stream_with_no_reader_registered_is_not_trimmed() -> None:
    app = perper.App("lonely")

    @app.stream(retention="ephemeral", recovery="checkpoint")
    async def numbers(ctx: perper.Context, count: int) -> Any:
        for i in range(count):
            yield i

    @app.launcher
    async def main(ctx: perper.Context, count: int = 10) -> None:
        await ctx.start(numbers, count=count)

    store = MemoryStore()
    await Runtime(store, app, settings=SETTINGS, clock=lambda: 0.0).run("r", {"count": 300})
    assert await store.first_seq("r/numbers-0") == 0
    assert len([x async for x in store.read("r/numbers-0")]) == 300


@pytest.mark.parametrize("recovery", ["checkpoint", "replay"])
@pytest.mark.parametrize("crash_at", [3, 17, 40])
async def test_a_crashed_ephemeral_pipeline_resumes_to_the_same_outputs(
    recovery: str, crash_at: int
) -> None:
    store = WatchedMemory()
    store.crash_at_checkpoint = crash_at
    app = build_app(recovery=recovery)
    await crashed_run(store, run(store, app))
    runtime = Runtime(
        store, app, settings=SETTINGS, clock=lambda: 0.0, entropy=random.Random(1), worker_id="2"
    )
    result = await runtime.run("r", {"count": COUNT})
    assert result.status == "done", result
    assert await totals(store) == expected_totals(COUNT)
    assert await store.first_seq("r/doubled-1") == COUNT


def test_an_unknown_retention_is_refused_naming_it_and_the_allowed_ones() -> None:
    app = perper.App("bad")
    with pytest.raises(ConfigError) as caught:

        @app.stream(retention="forever")
        async def numbers(ctx: perper.Context) -> Any:
            yield 1

    assert "'forever'" in str(caught.value) and "ephemeral" in str(caught.value)
    assert "numbers" not in app.functions


def test_retention_is_kept_on_the_registered_function() -> None:
    app = build_app()
    assert app.functions["numbers"].retention == "ephemeral"
    assert app.functions["total"].retention == "keep"
