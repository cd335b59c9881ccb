"""Producer throughput beside SQLiteStore.append (and IgniteStore.append) of the same items.

    python bench/ingest.py [--items 200000] [--senders 64] [--ignite URL | --no-ignite]

Three contenders append the same small dict items to fresh streams, in the same process:

* baseline: ``store.append`` of 1,000-item batches, one after the other (the fastest a
  single writer that tracks the seq itself can go);
* keyed sends: one :class:`perper.Producer`, ``--senders`` concurrent tasks each calling
  ``await send(item, key=...)`` in a loop, i.e. every item awaits its own durability and
  carries an idempotency key; group commit turns them into one store write per round;
* unkeyed ``send_many`` of 1,000-item lists, one after the other.

Each figure is items/s, with its ratio to the baseline measured in the same run and on the
same event loop. All three run on asyncio's own loop and on uvloop's (if installed; the
one ``perper``'s commands run on, unless ``$PERPER_LOOP`` says otherwise), the loops
alternated round by round, each on a store of its own; the last line gives the two loops'
ratios, round by round. Then the same run against an Ignite node: the one ``--ignite URL`` (or
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper import fabric
from perper.cli.common import event_loop_factory
from perper.errors import ConfigError
from perper.store import LogStore, open_store


def make_items(count: int) -> list[Any]:
    return [{"user": i % 500, "page": "/product", "time": i * 0.5} for i in range(count)]


async def baseline(store: LogStore, stream: str, items: list[Any], batch: int) -> float:
    started = time.perf_counter()
    seq = 0
    for start in range(0, len(items), batch):
        seq = await store.append(stream, seq, items[start : start + batch])
    return time.perf_counter() - started


async def keyed_sends(
    store: LogStore, stream: str, items: list[Any], senders: int
) -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds of the keyed sends (CPU time is a figure
    the machine's load moves less)."""
    producer = perper.Producer(store, stream)
    keys = [f"evt-{i}" for i in range(len(items))]
    send = producer.send

    async def sender(lane: int) -> None:
        for i in range(lane, len(items), senders):
            await send(items[i], key=keys[i])

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(sender(lane) for lane in range(senders)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert await store.head(stream) == len(items)
    return elapsed, cpu


async def unkeyed_send_many(store: LogStore, stream: str, items: list[Any], batch: int) -> float:
    producer = perper.Producer(store, stream)
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        await producer.send_many(items[start : start + batch])
    elapsed = time.perf_counter() - started
    assert await store.head(stream) == len(items)
    return elapsed


#: The event loops measured, in this order in round 0 (later rounds alternate it).
LOOPS = ("asyncio", "uvloop")


def loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Each loop the contenders run on: asyncio's own, and uvloop's if it is installed."""
    factories = {"asyncio": event_loop_factory("asyncio")}
    try:
        factories["uvloop"] = event_loop_factory("uvloop")
    except ConfigError as error:
        print(f"uvloop is not measured: {error}", file=sys.stderr)
    return factories


async def one_round(
    store: LogStore, r: int, items: list[Any], senders: int, batch: int
) -> tuple[float, float, float, float]:
    """The three contenders on fresh streams: (baseline, keyed, keyed CPU, unkeyed) seconds."""
    # Alternate the order, so neither contender always runs on a warmer file.
    if r % 2:
        unkeyed = await unkeyed_send_many(store, f"bench/unkeyed-{r}", items, batch)
        keyed, cpu = await keyed_sends(store, f"bench/keyed-{r}", items, senders)
        base = await baseline(store, f"bench/baseline-{r}", items, batch)
    else:
        base = await baseline(store, f"bench/baseline-{r}", items, batch)
        keyed, cpu = await keyed_sends(store, f"bench/keyed-{r}", items, senders)
        unkeyed = await unkeyed_send_many(store, f"bench/unkeyed-{r}", items, batch)
    return base, keyed, cpu, unkeyed


def measure(urls: dict[str, str], items: list[Any], senders: int, batch: int, rounds: int) -> None:
    """Run the three contenders ``rounds`` times on each event loop, on the store
    ``urls[loop]`` of each (all of one kind), the loops alternated round by round, each
    round on fresh streams; report per loop the median rate of each contender and the
    median of the per-round ratios to its baseline (the machine's load changes from second
    to second; ratios within a round share it), then the loops' per-round ratios."""
    factories = {name: factory for name, factory in loop_factories().items() if name in urls}
    n = len(items)
    load_before = os.getloadavg()[0]
    runners = {name: asyncio.Runner(loop_factory=factory) for name, factory in factories.items()}
    stores: dict[str, LogStore] = {}
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in runners}
    try:
        for name, runner in runners.items():
            store = stores[name] = open_store(urls[name])
            # One unmeasured round first: connecting, creating the file's pages, warming caches.
            runner.run(one_round(store, -1, items[: max(n // 10, 1)], senders, batch))
        for r in range(rounds):
            order = list(runners) if r % 2 == 0 else list(reversed(runners))
            for name in order:
                results[name].append(
                    runners[name].run(one_round(stores[name], r, items, senders, batch))
                )
    finally:
        for name, runner in runners.items():
            if name in stores:
                runner.run(stores[name].close())
            runner.close()
    load_after = os.getloadavg()[0]
    kind = next(iter(urls.values())).split("://")[0]
    median = statistics.median
    default = default_loop()
    print(
        f"{kind}: {n:,} items per contender and round, {rounds} rounds on each loop, "
        f"alternated, medians (load average {load_before:.1f} -> {load_after:.1f} on "
        f"{os.cpu_count()} cores)"
    )
    for name, rows in results.items():
        base = [n / row[0] for row in rows]
        keyed = [n / row[1] for row in rows]
        cpu = median(row[2] for row in rows)
        unkeyed = [n / row[3] for row in rows]
        note = " (perper's commands run on this one)" if name == default else ""
        print(f"  on {name}'s event loop{note}:")
        print(
            f"    {kind} append, {batch:,}-item batches    {median(base):>12,.0f} items/s   1.00x"
        )
        print(
            f"    Producer.send, keyed, {senders} senders  {median(keyed):>12,.0f} items/s "
            f"{median(row[0] / row[1] for row in rows):>6.2f}x  (each send awaits durability)"
        )
        print(
            f"      = {n / cpu:,.0f} items per second of this process's CPU time "
            f"({cpu / n * 1e6:.2f} us a send; wall-clock rates move with the load of the machine)"
        )
        print(
            f"    Producer.send_many, unkeyed, {batch:,}s {median(unkeyed):>12,.0f} items/s "
            f"{median(row[0] / row[3] for row in rows):>6.2f}x"
        )
    if len(results) == 2:
        fast, slow = results["uvloop"], results["asyncio"]
        pairs = list(zip(fast, slow, strict=True))
        print(
            "  uvloop / asyncio, medians of the rounds' ratios: keyed send "
            f"{median(s[1] / f[1] for f, s in pairs):.2f}x (per CPU second "
            f"{median(s[2] / f[2] for f, s in pairs):.2f}x), unkeyed send_many "
            f"{median(s[3] / f[3] for f, s in pairs):.2f}x, baseline "
            f"{median(s[0] / f[0] for f, s in pairs):.2f}x"
        )


def default_loop() -> str:
    """The loop perper's commands run on here: $PERPER_LOOP, else uvloop if installed."""
    factory = event_loop_factory(os.environ.get("PERPER_LOOP"))
    return "asyncio" if factory is asyncio.new_event_loop else "uvloop"


def ignite_urls(url: str) -> dict[str, str]:
    """A fresh namespace of the node at ``url`` for each loop."""
    sep = "&" if "?" in url else "?"
    tag = uuid.uuid4().hex[:8]
    return {loop: f"{url}{sep}namespace=bench-ingest-{tag}-{loop}" for loop in LOOPS}


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
        urls = {loop: f"sqlite:///{folder}/ingest-{loop}.db" for loop in LOOPS}
        measure(urls, items, args.senders, args.batch, args.rounds)
    if args.no_ignite:
        return
    if args.ignite:
        measure(ignite_urls(args.ignite), items, args.senders, args.batch, args.rounds)
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
            urls = ignite_urls(f"ignite://127.0.0.1:{args.port}")
            measure(urls, items, args.senders, args.batch, args.rounds)
        finally:
            fabric.stop(port=args.port, work_dir=work_dir)


if __name__ == "__main__":
    main()
