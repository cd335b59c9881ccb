"""Indexed streams: a point query beside a full scan, and indexed appends beside plain ones.

    python bench/query.py [--items 1000000] [--batch 1000] [--users 10000] [--repeat 3]
                          [--ignite URL | --no-ignite] [--ignite-items N]

Per backend (SQLite, then Ignite unless ``--no-ignite``), in the same process:

* **append**: the same batches of ``{"user", "amount", "page"}`` orders appended to a
  plain stream (the baseline) and to a stream indexed on ``user`` and ``amount``; the
  ratio is the indexing cost (goal: at most 2x the plain append).
* **SQL floor** (SQLite only): what SQLite alone takes for the indexed append's rows, so
  the indexing cost can be read against what one SQL row per item costs at least: the
  same segments and the same index rows (computed before the clock starts) written with
  ``executemany`` into the same index table and SQL indexes, one transaction per batch
  as the store does; and the same rows into a table without any SQL index, all in one
  transaction (the least one row per item can cost). Neither is perper's code path.
* **query**: ``store.query(stream, "user = ?", [u])`` for a few users beside the baseline
  a user would write without an index: a full scan of the same stream with a Python
  filter (``read_batches``, ``item["user"] == u``); the ratio is the speed-up (goal on
  SQLite: at least 100x).

Every measurement is repeated ``--repeat`` times and the median printed, with the ratio
to its baseline measured in the same run. Both answers are checked equal.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perper.store import LogStore, open_store
from perper.store.base import encode_segment
from perper.store.index import (
    CHECK,
    LOCATOR,
    normalize_index,
    sqlite_create,
    sqlite_insert,
    sqlite_rows,
)

INDEX = {"user": int, "amount": float}


def make_batches(items: int, batch: int, users: int) -> list[list[dict[str, Any]]]:
    return [
        [
            {"user": (i * 7919) % users, "amount": float(i % 1000), "page": f"/p/{i % 50}"}
            for i in range(start, min(start + batch, items))
        ]
        for start in range(0, items, batch)
    ]


async def append_all(store: LogStore, stream: str, batches: list[list[dict[str, Any]]]) -> float:
    started = time.perf_counter()
    seq = 0
    for batch in batches:
        seq = await store.append(stream, seq, batch)
    return time.perf_counter() - started


def sql_floor(path: Path, batches: list[list[dict[str, Any]]], *, indexed: bool) -> float:
    """The SQL floor of the indexed append (see the module's docstring): raw ``sqlite3``
    writes of the same segments and index rows, timed without building them."""
    spec = normalize_index(INDEX)
    segments, rows, first = [], [], 0
    for batch in batches:
        data = encode_segment(batch)
        segments.append((first, len(batch), data))
        rows.append(sqlite_rows(spec, "bench/orders", first, data, batch))
        first += len(batch)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE segments (stream_id INTEGER NOT NULL, first_seq INTEGER NOT NULL, "
        "count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, first_seq))"
    )
    if indexed:
        sqlite_create(db, "floor", spec)
    else:
        db.execute(
            'CREATE TABLE floor (seq INTEGER PRIMARY KEY, "user" INTEGER, "amount" REAL, '
            f"{LOCATOR} INTEGER, {CHECK} INTEGER)"
        )
    started = time.perf_counter()
    if not indexed:
        db.execute("BEGIN IMMEDIATE")
    for segment, batch_rows in zip(segments, rows, strict=True):
        if indexed:
            db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO segments VALUES (1, ?, ?, ?)", segment)
        sqlite_insert(db, "floor", spec, batch_rows)
        if indexed:
            db.execute("COMMIT")
    if not indexed:
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


async def measure(
    name: str,
    open_fresh: Callable[[int], LogStore],
    items: int,
    args: argparse.Namespace,
    floor_path: Callable[[int, str], Path] | None = None,
) -> dict[str, float]:
    batches = make_batches(items, args.batch, args.users)
    probes = [(k * 104729) % args.users for k in range(5)]
    plain_times: list[float] = []
    indexed_times: list[float] = []
    query_times: list[float] = []
    scan_times: list[float] = []
    floor_times: list[float] = []
    bare_times: list[float] = []
    for attempt in range(args.repeat):
        if floor_path is not None:
            floor_times.append(sql_floor(floor_path(attempt, "floor"), batches, indexed=True))
            bare_times.append(sql_floor(floor_path(attempt, "bare"), batches, indexed=False))
        async with open_fresh(attempt) as store:
            plain_times.append(await append_all(store, "bench/plain", batches))
            await store.declare_index("bench/orders", INDEX)
            indexed_times.append(await append_all(store, "bench/orders", batches))
            await _first_query(store)  # a first query pays for opening; not what we measure

            for user in probes:

                async def query(user: int = user) -> list[int]:
                    return [s async for s, _ in store.query("bench/orders", "user = ?", [user])]

                async def scan(user: int = user) -> list[int]:
                    found = []
                    async for first, items_ in store.read_batches("bench/orders"):
                        for offset, item in enumerate(items_):
                            if item["user"] == user:
                                found.append(first + offset)
                    return found

                elapsed, by_index = await timed(query)
                query_times.append(elapsed)
                if user == probes[0]:
                    elapsed, by_scan = await timed(scan)
                    scan_times.append(elapsed)
                    if by_scan != by_index:
                        raise SystemExit(f"{name}: the query and the scan disagree for user {user}")
    plain = statistics.median(plain_times)
    indexed = statistics.median(indexed_times)
    query = statistics.median(query_times)
    scan = statistics.median(scan_times)
    print(f"\n{name}: {items:,} items in batches of {args.batch}, {args.users:,} users")
    print(f"  plain append     {plain:8.3f} s   ({items / plain:,.0f} items/s)  [baseline]")
    print(
        f"  indexed append   {indexed:8.3f} s   ({items / indexed:,.0f} items/s)  "
        f"ratio {indexed / plain:.2f}x the plain append (goal <= 2x)"
    )
    if floor_times:
        floor, bare = statistics.median(floor_times), statistics.median(bare_times)
        print(
            f"  SQL floor        {floor:8.3f} s   the same rows, raw executemany into the same "
            f"indexed table, a transaction per batch: {floor / plain:.2f}x the plain append"
        )
        print(
            f"  bare SQL floor   {bare:8.3f} s   the same rows into a table without SQL "
            f"indexes, one transaction: {bare / plain:.2f}x the plain append"
        )
    print(f"  full scan+filter {scan * 1000:8.1f} ms  [baseline]")
    print(
        f"  point query      {query * 1000:8.2f} ms  ratio {scan / query:,.0f}x faster than the "
        "scan" + (" (goal >= 100x)" if name == "SQLite" else "")
    )
    return {"append_ratio": indexed / plain, "query_speedup": scan / query}


async def _first_query(store: LogStore) -> None:
    async for _ in store.query("bench/orders", "user = ?", [-1]):
        pass


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-ignite", action="store_true", help="SQLite only.")
    parser.add_argument(
        "--ignite",
        default=os.environ.get("PERPER_BENCH_IGNITE", "ignite://127.0.0.1:10800"),
        help="The Ignite node (default $PERPER_BENCH_IGNITE, else ignite://127.0.0.1:10800).",
    )
    parser.add_argument("--ignite-items", type=int, default=None, help="Default: --items.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perper-bench-query-") as folder:

        def sqlite_store(attempt: int) -> LogStore:
            return open_store(f"sqlite:///{Path(folder) / f'run-{attempt}.db'}")

        def floor_file(attempt: int, kind: str) -> Path:
            return Path(folder) / f"{kind}-{attempt}.db"

        await measure("SQLite", sqlite_store, args.items, args, floor_file)
    if args.no_ignite:
        return
    stamp = f"{os.getpid()}-{int(time.time())}"

    def ignite_store(attempt: int) -> LogStore:
        sep = "&" if "?" in args.ignite else "?"
        return open_store(f"{args.ignite}{sep}namespace=bench-query-{stamp}-{attempt}")

    try:
        await measure("Ignite", ignite_store, args.ignite_items or args.items, args)
    except Exception as error:  # no node: say how to get one, keep the SQLite figures
        print(
            f"\nIgnite: skipped ({error}); start a node with 'perper fabric start' or pass "
            "--no-ignite"
        )


if __name__ == "__main__":
    asyncio.run(main())
