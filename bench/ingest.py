"""Producer throughput beside SQLiteStore.append (and IgniteStore.append) of the same items.

    python bench/ingest.py [--items 200000] [--senders 64] [--ignite URL | --no-ignite]

Three contenders append the same small dict items to fresh streams, in the same process:

* baseline: ``store.append`` of 1,000-item batches, one after the other (the fastest a
  single writer that tracks the seq itself can go);
* keyed sends: one :class:`perper.Producer`, ``--senders`` concurrent tasks each calling
  ``await send(item, key=...)`` in a loop, i.e. every item awaits its own durability and
  carries an idempotency key; group commit turns them into one store write per round;
* unkeyed ``send_many`` of 1,000-item lists, one after the other.

Each figure is items/s, with its ratio to the baseline measured in the same run. Then the
same three run against an Ignite node: the one ``--ignite URL`` (or
``$PERPER_BENCH_IGNITE``) names, in a fresh namespace, else one started for the run with
perper.fabric (persistence on, ports from ``--port``), unless ``--no-ignite``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper import fabric
from perper.store import LogStore, open_store


def make_items(count: int) -> list[Any]:
    return [{"user": i % 500, "page": "/product", "time": i * 0.5} for i in range(count)]


async def baseline(store: LogStore, stream: str, items: list[Any], batch: int) -> float:
    started = time.perf_counter()
    seq = 0
    for start in range(0, len(items), batch):
        seq = await store.append(stream, seq, items[start : start + batch])
    return time.perf_counter() - started


async def keyed_sends(store: LogStore, stream: str, items: list[Any], senders: int) -> float:
    producer = perper.Producer(store, stream)
    keys = [f"evt-{i}" for i in range(len(items))]
    send = producer.send

    async def sender(lane: int) -> None:
        for i in range(lane, len(items), senders):
            await send(items[i], key=keys[i])

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(sender(lane) for lane in range(senders)))
    elapsed = time.perf_counter() - started
    cpu_seconds.append(time.process_time() - cpu)
    assert await store.head(stream) == len(items)
    return elapsed


#: This process's CPU seconds of each keyed run: a figure the machine's load moves less.
cpu_seconds: list[float] = []


async def unkeyed_send_many(store: LogStore, stream: str, items: list[Any], batch: int) -> float:
    producer = perper.Producer(store, stream)
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        await producer.send_many(items[start : start + batch])
    elapsed = time.perf_counter() - started
    assert await store.head(stream) == len(items)
    return elapsed


async def measure(url: str, items: list[Any], senders: int, batch: int, rounds: int) -> None:
    """Run the three contenders ``rounds`` times, interleaved, each round on fresh streams;
    report the median rate of each and the median of the per-round ratios (the machine's
    load changes from second to second; ratios within a round share it)."""
    rates: dict[str, list[float]] = {"base": [], "keyed": [], "unkeyed": []}
    ratios: dict[str, list[float]] = {"keyed": [], "unkeyed": []}
    n = len(items)
    load_before = os.getloadavg()[0]
    async with open_store(url) as store:
        # One unmeasured round first: connecting, creating the file's pages, warming caches.
        warm = items[: max(len(items) // 10, 1)]
        await baseline(store, "bench/warmup-baseline", warm, batch)
        await keyed_sends(store, "bench/warmup-keyed", warm, senders)
        await unkeyed_send_many(store, "bench/warmup-unkeyed", warm, batch)
        cpu_seconds.clear()
        for r in range(rounds):
            # Alternate the order, so neither contender always runs on a warmer file.
            if r % 2:
                unkeyed = await unkeyed_send_many(store, f"bench/unkeyed-{r}", items, batch)
                keyed = await keyed_sends(store, f"bench/keyed-{r}", items, senders)
                base = await baseline(store, f"bench/baseline-{r}", items, batch)
            else:
                base = await baseline(store, f"bench/baseline-{r}", items, batch)
                keyed = await keyed_sends(store, f"bench/keyed-{r}", items, senders)
                unkeyed = await unkeyed_send_many(store, f"bench/unkeyed-{r}", items, batch)
            for name, seconds in [("base", base), ("keyed", keyed), ("unkeyed", unkeyed)]:
                rates[name].append(n / seconds)
            ratios["keyed"].append(base / keyed)
            ratios["unkeyed"].append(base / unkeyed)
    kind = url.split("://")[0]
    median = statistics.median
    load_after = os.getloadavg()[0]
    print(
        f"{kind}: {n:,} items per contender and round, {rounds} rounds, medians "
        f"(load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"  {kind} append, {batch:,}-item batches    {median(rates['base']):>12,.0f} items/s   1.00x"
    )
    print(
        f"  Producer.send, keyed, {senders} senders  {median(rates['keyed']):>12,.0f} items/s "
        f"{median(ratios['keyed']):>6.2f}x  (each send awaits durability)"
    )
    print(
        f"    = {n / median(cpu_seconds):,.0f} items per second of this process's CPU time "
        f"({median(cpu_seconds) / n * 1e6:.2f} us a send; wall-clock rates move with the "
        "load of the machine)"
    )
    print(
        f"  Producer.send_many, unkeyed, {batch:,}s {median(rates['unkeyed']):>12,.0f} items/s "
        f"{median(ratios['unkeyed']):>6.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ignite",
        default=os.environ.get("PERPER_BENCH_IGNITE"),
        help="an ignite:// URL (default: $PERPER_BENCH_IGNITE, else start a node)",
    )
    parser.add_argument("--no-ignite", action="store_true", help="SQLite only")
    parser.add_argument("--port", type=int, default=10972, help="thin-client port of the own node")
    parser.add_argument("--discovery-port", type=int, default=48820)
    parser.add_argument("--communication-port", type=int, default=48795)
    args = parser.parse_args()
    items = make_items(args.items)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/ingest.db"
        asyncio.run(measure(url, items, args.senders, args.batch, args.rounds))
    if args.no_ignite:
        return
    if args.ignite:
        sep = "&" if "?" in args.ignite else "?"
        url = f"{args.ignite}{sep}namespace=bench-ingest-{uuid.uuid4().hex[:8]}"
        asyncio.run(measure(url, items, args.senders, args.batch, args.rounds))
        return
    with tempfile.TemporaryDirectory(prefix="perper-bench-ingest-") as work_dir:
        options: dict[str, Any] = {
            "port": args.port,
            "work_dir": work_dir,
            "discovery_port": args.discovery_port,
            "communication_port": args.communication_port,
        }
        print(f"starting an Ignite node on 127.0.0.1:{args.port} ...", file=sys.stderr)
        fabric.start(persistence=True, **options)
        try:
            url = f"ignite://127.0.0.1:{args.port}"
            asyncio.run(measure(url, items, args.senders, args.batch, args.rounds))
        finally:
            fabric.stop(port=args.port, work_dir=work_dir)


if __name__ == "__main__":
    main()
