"""Calls per second: sequential round trips and 64 concurrent calls in flight.

    python bench/calls.py [--calls 2000] [--ignite ignite://127.0.0.1:10800]

A launcher makes N calls of a small ``@app.call`` function (each one an execution with a
durable result) on SQLite (a temporary file) and, given --ignite or $PERPER_BENCH_IGNITE,
on an Ignite node: first one at a time (the caller awaits each), then with 64 in flight
(asyncio.gather over windows of 64). The baseline, measured in the same run, is the same
work as a plain in-process ``await`` of the function. Printed: calls/s per mode and
store, and each one's ratio to the baseline. Goals on the 2-core machine: >= 2,000
sequential and >= 10,000 concurrent calls/s on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.runtime import Runtime

app = perper.App("bench_calls")
WINDOW = 64


@app.call
async def add(ctx: perper.Context, a: int, b: int) -> int:
    return a + b


async def _plain_add(ctx: object, a: int, b: int) -> int:
    return a + b


@app.launcher
async def main(ctx: perper.Context, calls: int, concurrent: bool) -> None:
    if concurrent:
        for start in range(0, calls, WINDOW):
            window = range(start, min(start + WINDOW, calls))
            results = await asyncio.gather(*(ctx.call(add, i, 1) for i in window))
            assert results == [i + 1 for i in window]
    else:
        for i in range(calls):
            assert await ctx.call(add, i, 1) == i + 1


async def baseline(calls: int, concurrent: bool) -> float:
    started = time.perf_counter()
    if concurrent:
        for start in range(0, calls, WINDOW):
            window = range(start, min(start + WINDOW, calls))
            await asyncio.gather(*(_plain_add(None, i, 1) for i in window))
    else:
        for i in range(calls):
            await _plain_add(None, i, 1)
    return calls / (time.perf_counter() - started)


async def measure(url: str, calls: int, concurrent: bool) -> float:
    async with perper.open_store(url) as store:
        runtime = Runtime(store, app)
        run = f"bench-{os.urandom(4).hex()}"
        started = time.perf_counter()
        result = await runtime.run(run, {"calls": calls, "concurrent": concurrent})
        elapsed = time.perf_counter() - started
        result.raise_on_failure()
        return calls / elapsed


async def bench(calls: int, ignite: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", f"sqlite:///{tmp}/calls.db")]
        if ignite:
            separator = "&" if "?" in ignite else "?"
            stores.append(
                ("ignite", f"{ignite}{separator}namespace=bench-calls-{os.urandom(3).hex()}")
            )
        print(f"{calls:,} calls of add(a, b) per measurement")
        for concurrent in (False, True):
            mode = f"{WINDOW} concurrent" if concurrent else "sequential"
            base = await baseline(calls * 10, concurrent)
            print(f"  {mode:14} in-process await (baseline): {base:12,.0f} calls/s")
            for name, url in stores:
                rate = await measure(url, calls, concurrent)
                print(
                    f"  {mode:14} {name:26}: {rate:12,.0f} calls/s"
                    f"  (baseline/this = {base / rate:,.0f}x)"
                )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--ignite", default=os.environ.get("PERPER_BENCH_IGNITE"))
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    asyncio.run(bench(arguments.calls, arguments.ignite))
