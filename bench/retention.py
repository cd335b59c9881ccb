"""An ephemeral 3-stage pipeline stays bounded: its store never grows past what 100,000 kept
items take, while its outputs equal a kept (non-ephemeral) run's.

    python bench/retention.py [--items 2000000] [--baseline-items 100000] [--repeat 1]

The pipeline is tests/retention/pipeline.py: numbers -> doubled (both ephemeral, checkpoint
mode) -> total (kept). Three runs on SQLite files in one folder, in this process:

1. the baseline: the same pipeline with every stream kept, over ``--baseline-items``; its
   file size (database + WAL) and stored item count at the end are the bound;
2. the ephemeral run over ``--items``: file size and stored items sampled after every
   segment write, the maximum kept;
3. a kept run over ``--items``, whose ``total`` output the ephemeral run's must equal.

It prints the maxima beside the bound as ratios (below 1.0 is bounded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perper.runtime import Runtime, RuntimeSettings
from perper.store.sqlite import SQLiteStore
from tests.retention.pipeline import build_app

SETTINGS = RuntimeSettings(batch_size=1000, checkpoint_every=1000)


class SampledSQLite(SQLiteStore):
    """Notes the most items stored and the largest file size seen after each write."""

    most_items = 0
    most_bytes = 0
    most_db_bytes = 0
    writes = 0

    def size(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            path = self.path.with_name(self.path.name + suffix)
            if path.exists():
                total += os.stat(path).st_size
        return total

    def items(self) -> int:
        return int(self._db.execute("SELECT coalesce(sum(count), 0) FROM segments").fetchone()[0])

    def sample(self) -> None:
        self.most_items = max(self.most_items, self.items())
        self.most_bytes = max(self.most_bytes, self.size())
        self.most_db_bytes = max(self.most_db_bytes, os.stat(self.path).st_size)

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        await super().write_segment(stream, seq, count, data, epoch)
        self.writes += 1
        self.sample()


async def pipeline(
    path: Path, items: int, retention: str
) -> tuple[SampledSQLite, list[Any], float]:
    store = SampledSQLite(path)
    runtime = Runtime(
        store,
        build_app(retention=retention, every=1000),
        settings=SETTINGS,
        clock=lambda: 0.0,
        entropy=random.Random(0),
    )
    started = time.perf_counter()
    result = await runtime.run("bench", {"count": items})
    elapsed = time.perf_counter() - started
    if result.status != "done":
        raise SystemExit(f"the {retention} run ended {result.status}: {result.failures}")
    store.sample()
    totals = [item async for _, item in store.read("bench/total-2")]
    return store, totals, elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2_000_000)
    parser.add_argument("--baseline-items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="ephemeral runs (median shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perper-retention-") as folder:
        base, _, base_time = await pipeline(Path(folder, "base.db"), args.baseline_items, "keep")
        bound_items, bound_bytes = base.items(), base.size()
        bound_db = os.stat(base.path).st_size
        await base.close()
        print(
            f"baseline: kept pipeline over {args.baseline_items:,} items: {bound_items:,} items "
            f"stored, {bound_bytes / 1e6:.1f} MB with the WAL, {bound_db / 1e6:.1f} MB without "
            f"({base_time:.1f}s)"
        )
        peaks: list[tuple[int, int, int]] = []
        outputs: list[Any] = []
        for run in range(args.repeat):
            store, outputs, elapsed = await pipeline(
                Path(folder, f"ephemeral-{run}.db"), args.items, "ephemeral"
            )
            peaks.append((store.most_items, store.most_bytes, store.most_db_bytes))
            print(
                f"ephemeral: {args.items:,} items: at most {store.most_items:,} items stored, "
                f"at most {store.most_bytes / 1e6:.1f} MB with the WAL, "
                f"{store.most_db_bytes / 1e6:.1f} MB without ({elapsed:.1f}s, {store.writes:,} "
                "segment writes sampled)"
            )
            await store.close()
        kept, kept_outputs, kept_time = await pipeline(Path(folder, "kept.db"), args.items, "keep")
        kept_items, kept_bytes = kept.items(), kept.size()
        await kept.close()
        print(
            f"kept: {args.items:,} items: {kept_items:,} items stored, {kept_bytes / 1e6:.1f} MB "
            f"({kept_time:.1f}s)"
        )
    peaks.sort()
    most_items, most_bytes, most_db = peaks[len(peaks) // 2]
    same = outputs == kept_outputs
    print(f"outputs equal the kept run's: {same} ({len(outputs)} totals)")
    print(f"ratio of stored items, ephemeral max / baseline: {most_items / bound_items:.3f}")
    print(f"ratio of file size, ephemeral max / baseline: {most_bytes / bound_bytes:.3f}")
    print(f"ratio of database file size (no WAL): {most_db / bound_db:.3f}")
    if not same or most_items >= bound_items or most_bytes >= bound_bytes:
        raise SystemExit("NOT bounded, or the outputs differ")


if __name__ == "__main__":
    asyncio.run(main())
