"""What finding a run's outside inputs in its items costs an export, beside the same copy
without it.

    python bench/export.py [--items 200000] [--batch 1000] [--repeat 3] [--refs]

A run ``r`` of two streams of ``--items`` items each (``{"value": i, "page": "/"}``, in
batches of ``--batch``) is written to an in-memory store, then copied into a fresh
SQLite file twice, alternating, ``--repeat`` times: ``copy_store(run="r")`` (which
scans every copied segment for StreamRefs, ``perper.store.mirror.segment_refs``) and
``copy_store(streams="r/*")`` (the same streams and metadata, no run selection: no scan).
The ratio run / glob is what the scan costs. With ``--refs`` every item also holds a
``perper.StreamRef`` (every segment matches and is decoded: the worst case).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.store.memory import MemoryStore
from perper.store.mirror import copy_store
from perper.store.sqlite import SQLiteStore


async def fill(store: MemoryStore, items: int, batch: int, refs: bool) -> None:
    for stream in ("r/a-0", "r/b-1"):
        for start in range(0, items, batch):
            chunk = [{"value": i, "page": "/"} for i in range(start, min(items, start + batch))]
            if refs:
                for item in chunk:
                    item["ref"] = perper.StreamRef("r/a-0")
            await store.append(stream, start, chunk)
        await store.seal(stream)


async def timed(src: MemoryStore, folder: Path, **selection: str) -> float:
    path = folder / "export.sqlite"
    path.unlink(missing_ok=True)
    async with SQLiteStore(path) as dest:
        began = time.perf_counter()
        await copy_store(src, dest, **selection)
        return time.perf_counter() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--refs", action="store_true")
    args = parser.parse_args()
    src = MemoryStore()
    await fill(src, args.items, args.batch, args.refs)
    runs, globs = [], []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):
            runs.append(await timed(src, Path(folder), run="r"))
            globs.append(await timed(src, Path(folder), streams="r/*"))
    total = 2 * args.items
    run, glob = min(runs), min(globs)
    print(f"items: {total:,} in batches of {args.batch:,}, refs in items: {args.refs}")
    print(f"export --run (scans)     {total / run:>12,.0f} items/s")
    print(f"export --streams (none)  {total / glob:>12,.0f} items/s")
    print(f"ratio run / streams      {glob / run:>12.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
