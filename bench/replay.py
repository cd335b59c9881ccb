"""Replay throughput of a simple map function beside plain iteration over the same items.

    python bench/replay.py [--items 1000000]

A run of ``source`` (yields ``{"value": i}``) feeding ``double`` (yields
``{"value": 2 * value}`` per input item) is recorded into a SQLite file; then
``perper.replay.replay(log, app, function="double")`` replays ``double`` over its
recorded input and compares every output item with the recording. The baseline is what
the replay cannot beat: a plain Python loop applying the same map to the same items,
already decoded in memory, with no comparison. Both run in the same process; each
rate is the best of ``--repeat`` runs, by wall clock (and, last line, by CPU time).

A third line shows what any replay that runs the function as written must pay: the
floor, ``double`` itself driven by a bare ``async for`` over the same decoded items (an
async generator handing them to its ``ctx.read`` loop, nothing stored, decoded or
compared). Two async-generator hops per item cost about three plain loops' worth, so
the floor sits near 0.3x the plain loop; docs/replay.md has the instruction counts. A
diagnostic line, "decoded", adds to the floor what every replay must also do: decode
the recorded input from the log (the function needs its items as objects).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.replay import replay
from perper.store.sqlite import SQLiteStore

app = perper.App("bench")


@app.stream
async def source(ctx: perper.Context, count: int):  # type: ignore[no-untyped-def]
    for i in range(count):
        yield {"value": i}


@app.stream
async def double(ctx: perper.Context, items: perper.StreamRef):  # type: ignore[no-untyped-def]
    async for item in ctx.read(items):
        yield {"value": item["value"] * 2}


@app.launcher
async def main(ctx: perper.Context, count: int = 1000):  # type: ignore[no-untyped-def]
    await ctx.start(double, await ctx.start(source, count=count))


async def record(path: Path, count: int) -> list[list[Any]]:
    async with SQLiteStore(path) as store:
        runtime = perper.Runtime(store, app, clock=lambda: 0.0, entropy=random.Random(0))
        result = await runtime.run("bench", {"count": count})
        result.raise_on_failure()
        return [items async for _, items in store.read_batches("bench/source-0")]


def plain(batches: list[list[Any]]) -> int:
    count = 0
    for items in batches:
        for item in items:
            {"value": item["value"] * 2}  # the map, as the replay runs it
            count += 1
    return count


class _Items:
    """The one ``ctx`` method ``double`` uses, over items already in memory."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches

    async def read(self, ref: Any) -> Any:
        for items in self.batches:
            for item in items:
                yield item


class _Decoded:
    """``ctx.read`` over the recorded input as the log hands it out: decoded a segment
    at a time by ``store.read_batches`` (checksum checked), nothing compared."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def read(self, ref: Any) -> Any:
        async for _, items in self.store.read_batches("bench/source-0"):
            for item in items:
                yield item


async def decoded(path: Path) -> int:
    count = 0
    async with SQLiteStore(path, read_only=True) as store:
        async for _ in double.fn(_Decoded(store), None):  # type: ignore[arg-type]
            count += 1
    return count


async def floor(batches: list[list[Any]]) -> int:
    count = 0
    async for _ in double.fn(_Items(batches), None):  # type: ignore[arg-type]
        count += 1
    return count


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    n = args.items
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        started = time.perf_counter()
        batches = asyncio.run(record(path, n))
        recorded = time.perf_counter() - started
        replays, replays_cpu = [], []
        for _ in range(args.repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            results = replay(path, app, function="double")
            replays.append(time.perf_counter() - started)
            replays_cpu.append(time.process_time() - started_cpu)
            [result] = results.results
            assert result.outcome == "identical", result
            assert result.items_compared == n, result
        floors, floors_cpu = [], []
        for _ in range(args.repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            assert asyncio.run(floor(batches)) == n
            floors.append(time.perf_counter() - started)
            floors_cpu.append(time.process_time() - started_cpu)
        # Diagnostic only: the floor plus decoding the input from the log, which any
        # replay must also do (the function needs the items as objects).
        decodeds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            assert asyncio.run(decoded(path)) == n
            decodeds.append(time.perf_counter() - started)
        plains, plains_cpu = [], []
        for _ in range(args.repeat):
            started, started_cpu = time.perf_counter(), time.process_time()
            assert plain(batches) == n
            plains.append(time.perf_counter() - started)
            plains_cpu.append(time.process_time() - started_cpu)
    best_replay, best_plain, best_floor = min(replays), min(plains), min(floors)
    print(
        f"items: {n:,} yielded by a map function over {n:,} recorded input items "
        f"(recorded in {recorded:.1f} s)"
    )
    print(f"replay   perper.replay (read, run, compare) {n / best_replay:>12,.0f} items/s")
    print(f"plain    loop over decoded items, no compare {n / best_plain:>12,.0f} items/s")
    print(f"floor    the function over decoded items     {n / best_floor:>12,.0f} items/s")
    print(f"decoded  the floor + decoding the log's input {n / min(decodeds):>12,.0f} items/s")
    print(f"ratio    replay / plain                      {best_plain / best_replay:>12.2f}x")
    print(f"ratio    floor / plain                       {best_plain / best_floor:>12.2f}x")
    print(f"ratio    replay / floor                      {best_floor / best_replay:>12.2f}x")
    print(f"ratio    decoded / plain                     {best_plain / min(decodeds):>12.2f}x")
    # On a shared machine wall-clock rates swing with the load; CPU time much less.
    print(
        f"cpu      replay {n / min(replays_cpu):,.0f} items/s, floor "
        f"{n / min(floors_cpu):,.0f} items/s, plain {n / min(plains_cpu):,.0f} items/s (rates "
        "by process CPU time)"
    )


if __name__ == "__main__":
    main_()
