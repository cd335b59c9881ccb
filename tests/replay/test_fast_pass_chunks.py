"""The fast pass compares a recorded segment a chunk of items at a time, by bytes; a
divergence inside a run of byte-equal items is still reported at its exact seq, and an
item stored with other bytes that decode to an equal item counts as equal (as for
recovery's idempotent append: the decoded stored item re-encoded against the new one)."""

from __future__ import annotations

import sqlite3
import struct
import zlib
from pathlib import Path

import ormsgpack
import pytest

import perper
from perper.replay import DIVERGED, IDENTICAL, replay
from perper.replay.engine import CHUNK
from perper.replay.results import SHORTER
from tests.replay.conftest import record

ITEMS = 3 * CHUNK + 50  # one recorded segment of several chunks


def _app(change_at: int | None = None, stop_at: int | None = None) -> perper.App:
    """``mapper`` yields its input's values; ``change_at`` yields -1 instead of that one;
    ``stop_at`` stops before yielding that seq."""
    app = perper.App("chunks")

    @app.stream
    async def source(ctx: perper.Context):  # type: ignore[no-untyped-def]
        for i in range(ITEMS):
            yield i

    @app.stream
    async def mapper(ctx: perper.Context, items: perper.StreamRef):  # type: ignore[no-untyped-def]
        async for value in ctx.read(items):
            if value == stop_at:
                return
            yield -1 if value == change_at else value

    @app.launcher
    async def main(ctx: perper.Context):  # type: ignore[no-untyped-def]
        await ctx.start(mapper, await ctx.start(source))

    return app


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = record(tmp_path_factory.mktemp("chunks") / "c.db", _app(), batch_size=10_000)
    with sqlite3.connect(path) as db:
        counts = db.execute(
            "SELECT count FROM segments JOIN streams ON streams.id = stream_id "
            "WHERE name = 'r/mapper-1'"
        ).fetchall()
    assert counts == [(ITEMS,)]  # the test is about one segment of several chunks
    return path


@pytest.mark.parametrize("seq", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7, ITEMS - 1])
def test_a_changed_item_among_byte_equal_ones_diverges_at_its_exact_seq(
    log: Path, seq: int
) -> None:
    result = replay(log, _app(change_at=seq), function="mapper")["r/mapper-1"]
    assert result.outcome == DIVERGED
    divergence = result.divergence
    assert divergence is not None
    assert (divergence.seq, divergence.expected, divergence.actual) == (seq, seq, -1)
    assert divergence.diff == (f"item: expected {seq}, got -1",)
    assert divergence.input_positions == {"r/source-0": seq + 1}
    assert result.items_compared == seq


@pytest.mark.parametrize("stop", [CHUNK, 2 * CHUNK, 2 * CHUNK + 3])
def test_a_function_that_stops_inside_a_segment_is_shorter_at_the_first_missing_seq(
    log: Path, stop: int
) -> None:
    result = replay(log, _app(stop_at=stop), function="mapper")["r/mapper-1"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert result.divergence.kind == SHORTER
    assert (result.divergence.seq, result.divergence.expected) == (stop, stop)
    assert result.items_compared == stop


def _rewrite_with_a_wide_int(log: Path, tmp_path: Path, seq: int) -> Path:
    """A copy of ``log`` whose mapper segment stores the item at ``seq`` as a uint32
    (the canonical encoding is the shortest): other bytes, an equal item once decoded."""
    copy = tmp_path / "wide.db"
    copy.write_bytes(log.read_bytes())
    items = [ormsgpack.packb(i) for i in range(ITEMS)]
    items[seq] = b"\xce" + struct.pack(">I", seq)
    assert ormsgpack.unpackb(items[seq]) == seq and items[seq] != ormsgpack.packb(seq)
    packed = b"\xdc" + struct.pack(">H", ITEMS) + b"".join(items)
    data = struct.pack(">I", zlib.crc32(packed)) + packed
    with sqlite3.connect(copy) as db:
        changed = db.execute(
            "UPDATE segments SET data = ? WHERE stream_id = "
            "(SELECT id FROM streams WHERE name = 'r/mapper-1')",
            (data,),
        ).rowcount
    assert changed == 1
    return copy


def test_an_item_stored_with_other_bytes_that_decode_equal_replays_identically(
    log: Path, tmp_path: Path
) -> None:
    wide = _rewrite_with_a_wide_int(log, tmp_path, CHUNK + 5)
    result = replay(wide, _app(), function="mapper")["r/mapper-1"]
    assert result.outcome == IDENTICAL, str(result)
    assert result.items_compared == ITEMS


@pytest.mark.parametrize("seq", [CHUNK + 5, CHUNK + 6, 2 * CHUNK + 1, ITEMS - 1])
def test_after_an_item_stored_with_other_bytes_a_change_still_diverges_at_its_seq(
    log: Path, tmp_path: Path, seq: int
) -> None:
    wide = _rewrite_with_a_wide_int(log, tmp_path, CHUNK + 5)
    result = replay(wide, _app(change_at=seq), function="mapper")["r/mapper-1"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.actual) == (seq, -1)
    assert result.divergence.input_positions == {"r/source-0": seq + 1}
