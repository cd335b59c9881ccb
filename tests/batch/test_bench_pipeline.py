"""bench/pipeline.py's batch pipeline computes what it claims, on a small stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import pipeline


@pytest.mark.parametrize("dicts", [True, False], ids=["dict items", "int items"])
async def test_the_batch_pipeline_of_the_benchmark_totals_every_item_durably(
    tmp_path: Path, dicts: bool
) -> None:
    # 25,000 items: two full batches and a partial one; durable_batches asserts the
    # processor's head, its last total and the consumer's checkpointed count.
    elapsed = await pipeline.durable_batches(tmp_path / "b.db", 25_000, dicts=dicts)
    assert elapsed > 0


def test_the_raw_sqlite_baseline_stores_every_segment(tmp_path: Path) -> None:
    import sqlite3

    pipeline.raw_sqlite(tmp_path / "raw.db", 25_000)
    db = sqlite3.connect(tmp_path / "raw.db")
    assert db.execute("SELECT count(*), sum(count) FROM segments").fetchone() == (3, 25_000)
