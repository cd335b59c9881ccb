"""Append and read-back throughput of SQLiteStore beside a raw per-row sqlite3 baseline.

    python bench/append.py [--items 1000000] [--batch 1000]

The baseline is what one would write by hand: stdlib sqlite3, one msgpack row per item
(packed with ormsgpack, perper's encoder), ``executemany`` of a batch per transaction,
WAL, ``synchronous=NORMAL``. Both sides append the same small dict items in the same
batches, to fresh files in the same folder, in the same process.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import ormsgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perper.store.sqlite import SQLiteStore

SHAPES = {
    # what examples/basic.py's generator yields
    "value": lambda i: {"value": i},
    # a wider record
    "record": lambda i: {"value": i, "name": "item", "ok": True},
}


def make_batches(items: int, batch: int, shape: str) -> list[list[dict[str, object]]]:
    make = SHAPES[shape]
    return [
        [make(i) for i in range(start, min(start + batch, items))]
        for start in range(0, items, batch)
    ]


def baseline(path: Path, batches: list[list[dict[str, object]]]) -> tuple[float, float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE items (stream TEXT, seq INTEGER, data BLOB, PRIMARY KEY (stream, seq))"
    )
    started = time.perf_counter()
    seq = 0
    for batch in batches:
        rows = []
        for item in batch:
            rows.append(("s", seq, ormsgpack.packb(item)))
            seq += 1
        db.execute("BEGIN")
        db.executemany("INSERT INTO items VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
    append = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    for (data,) in db.execute("SELECT data FROM items WHERE stream = 's' ORDER BY seq"):
        ormsgpack.unpackb(data)
        count += 1
    read = time.perf_counter() - started
    assert count == seq
    db.close()
    return append, read


async def perper_store(
    path: Path, batches: list[list[dict[str, object]]]
) -> tuple[float, float, float]:
    store = SQLiteStore(path)
    started = time.perf_counter()
    seq = 0
    for batch in batches:
        seq = await store.append("s", seq, batch)
    append = time.perf_counter() - started
    started = time.perf_counter()
    count = 0
    async for _, items in store.read_batches("s"):
        count += len(items)
    read_batches = time.perf_counter() - started
    started = time.perf_counter()
    per_item = 0
    async for _ in store.read("s"):
        per_item += 1
    read_items = time.perf_counter() - started
    assert count == per_item == seq
    await store.close()
    return append, read_batches, read_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument(
        "--shape",
        choices=[*SHAPES, "all"],
        default="all",
        help="item shape: value = {'value': i}, record = 3 fields",
    )
    args = parser.parse_args()
    for shape in SHAPES if args.shape == "all" else [args.shape]:
        run(args.items, args.batch, shape)


def run(n: int, batch: int, shape: str) -> None:
    batches = make_batches(n, batch, shape)
    with tempfile.TemporaryDirectory() as folder:
        base_append, base_read = baseline(Path(folder) / "baseline.db", batches)
        append, read_batches, read_items = asyncio.run(
            perper_store(Path(folder) / "perper.db", batches)
        )

    def rate(seconds: float) -> float:
        return n / seconds

    print(f"items: {n:,} of shape {shape!r} ({batches[0][0]}) in batches of {batch:,}")
    print(f"append   SQLiteStore.append        {rate(append):>12,.0f} items/s")
    print(f"append   baseline executemany/row  {rate(base_append):>12,.0f} items/s")
    print(f"append   ratio                     {base_append / append:>12.2f}x")
    print(f"read     SQLiteStore.read_batches  {rate(read_batches):>12,.0f} items/s (decoded)")
    print(f"read     SQLiteStore.read per item {rate(read_items):>12,.0f} items/s (decoded)")
    print(f"read     baseline row by row       {rate(base_read):>12,.0f} items/s (decoded)")
    print(f"read     ratio (batches/baseline)  {base_read / read_batches:>12.2f}x")
    print()


if __name__ == "__main__":
    main()
