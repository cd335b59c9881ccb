"""The fast pass counts a yielded Batch as its items wherever it comes: first, after
single items, across recorded segments, and past the recorded end."""

from __future__ import annotations

from pathlib import Path

import perper
from perper.replay import DIVERGED, IDENTICAL, replay
from perper.replay.results import LONGER
from tests.replay.conftest import record


def _app(extra: int = 0, change_at: int | None = None) -> perper.App:
    """Yields 0..9 one by one, then 10..34 as one Batch, 35..39 one by one, then
    40..59 as Batches of 7, 7 and 6 (and ``extra`` more items in a last Batch);
    ``change_at`` yields -1 instead of that value."""
    app = perper.App("fastbatch")

    def value(i: int) -> int:
        return -1 if i == change_at else i

    @app.stream
    async def late(ctx: perper.Context):  # type: ignore[no-untyped-def]
        for i in range(10):
            yield value(i)
        yield perper.Batch([value(i) for i in range(10, 35)])
        for i in range(35, 40):
            yield value(i)
        for first in (40, 47, 54):
            yield perper.Batch([value(i) for i in range(first, min(first + 7, 60))])
        if extra:
            yield perper.Batch(list(range(60, 60 + extra)))

    @app.stream
    async def first(ctx: perper.Context):  # type: ignore[no-untyped-def]
        yield perper.Batch([value(i) for i in range(0, 12)])
        yield value(12)
        yield perper.Batch([value(i) for i in range(13, 30)])

    @app.launcher
    async def main(ctx: perper.Context):  # type: ignore[no-untyped-def]
        await ctx.start(late)
        await ctx.start(first)

    return app


def test_batches_after_single_items_and_across_segments_replay_identically(
    tmp_path: Path,
) -> None:
    log = record(tmp_path / "b.db", _app(), batch_size=4)
    results = replay(log, _app())
    assert results.ok, str(results)
    assert results["r/late-0"].outcome == IDENTICAL
    assert results["r/late-0"].items_compared == 60
    assert results["r/first-1"].items_compared == 30


def test_a_changed_item_inside_a_late_batch_diverges_at_its_exact_seq(tmp_path: Path) -> None:
    log = record(tmp_path / "b.db", _app(), batch_size=4)
    for seq in (22, 45, 59):
        result = replay(log, _app(change_at=seq), function="late")["r/late-0"]
        assert result.outcome == DIVERGED
        assert result.divergence is not None
        assert (result.divergence.seq, result.divergence.expected, result.divergence.actual) == (
            seq,
            seq,
            -1,
        )
        assert result.items_compared == seq


def test_a_changed_item_inside_a_first_batch_diverges_at_its_exact_seq(tmp_path: Path) -> None:
    log = record(tmp_path / "b.db", _app(), batch_size=4)
    result = replay(log, _app(change_at=5), function="first")["r/first-1"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.actual) == (5, -1)


def test_a_batch_past_the_recorded_end_is_reported_longer_at_the_first_extra_seq(
    tmp_path: Path,
) -> None:
    log = record(tmp_path / "b.db", _app(), batch_size=4)
    result = replay(log, _app(extra=3), function="late")["r/late-0"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert (result.divergence.kind, result.divergence.seq, result.divergence.actual) == (
        LONGER,
        60,
        60,
    )


def test_a_recording_with_more_items_than_a_batched_replay_is_reported_shorter(
    tmp_path: Path,
) -> None:
    log = record(tmp_path / "b.db", _app(extra=5), batch_size=4)
    result = replay(log, _app(), function="late")["r/late-0"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert (result.divergence.seq, result.divergence.expected) == (60, 60)
    assert result.items_compared == 60
