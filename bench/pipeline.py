"""End-to-end throughput of a durable three-step pipeline beside its in-memory twin.

    python bench/pipeline.py [--items 1000000]

generator -> processor -> consumer over N items, every hop appended durably to a SQLite
log, the processor and the consumer in checkpoint mode checkpointing every 1,000 items.
Beside it, in the same run: the same three async generators chained in memory with no
store (the overhead ratio), and — where bytewax installs from PyPI — bytewax's
``stateful_map`` over the same items with recovery enabled (the peer ratio).

Then the batch path, in the same run: the same three stages written with
``ctx.read_batches`` and ``yield perper.Batch(...)`` (durable on SQLite, checkpoint mode),
bytewax's ``flat_map_batch`` over the same items with recovery enabled, and the raw
SQLite limit: the generator's encoded segments (encoded before the clock starts)
inserted as blobs, a transaction each, in a file with the store's pragmas (its page
size, WAL, synchronous=NORMAL). The pipeline writes two streams of N items and reads two, so it
cannot pass half that limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from itertools import accumulate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.runtime import Runtime
from perper.store.base import encode_segment
from perper.store.sqlite import PAGE_SIZE

app = perper.App("pipeline")


@app.stream
async def generator(ctx: perper.Context, count: int):
    for i in range(count):
        yield {"value": i}


@app.stream(recovery="checkpoint", checkpoint_every=1000)
async def processor(ctx: perper.Context, source: perper.StreamRef):
    state = ctx.state
    state.setdefault("total", 0)
    async for item in ctx.read(source):
        state["total"] += item["value"]
        yield {"value": item["value"], "total": state["total"]}


@app.action(recovery="checkpoint", checkpoint_every=1000)
async def consumer(ctx: perper.Context, source: perper.StreamRef):
    state = ctx.state
    state.setdefault("seen", 0)
    async for _ in ctx.read(source):
        state["seen"] += 1


@app.launcher
async def main(ctx: perper.Context, count: int):
    await ctx.start(consumer, await ctx.start(processor, await ctx.start(generator, count=count)))


#: Items per yielded Batch (so per stored segment) in the batch pipeline.
CHUNK = 10_000
#: What the batch path aims at (issue 15), printed beside the int-item line.
GOAL = 3_000_000

batch_app = perper.App("pipeline_batches")


@batch_app.stream
async def batch_generator(ctx: perper.Context, count: int, dicts: bool):
    for start in range(0, count, CHUNK):
        values = range(start, min(start + CHUNK, count))
        yield perper.Batch([{"value": i} for i in values] if dicts else list(values))


@batch_app.stream(recovery="checkpoint", checkpoint_every=1000)
async def batch_processor(ctx: perper.Context, source: perper.StreamRef, dicts: bool):
    state = ctx.state
    state.setdefault("total", 0)
    async for batch in ctx.read_batches(source):
        if not dicts:  # int items: the running totals themselves
            totals = list(accumulate(batch, initial=state["total"]))
            del totals[0]  # the initial value itself
            state["total"] = totals[-1]
            yield perper.Batch(totals)
            continue
        values = [item["value"] for item in batch]
        totals = accumulate(values, initial=state["total"])
        next(totals)  # the initial value itself
        out = [{"value": v, "total": t} for v, t in zip(values, totals, strict=True)]
        state["total"] = out[-1]["total"]
        yield perper.Batch(out)


@batch_app.action(recovery="checkpoint", checkpoint_every=1000)
async def batch_consumer(ctx: perper.Context, source: perper.StreamRef):
    state = ctx.state
    state.setdefault("seen", 0)
    async for batch in ctx.read_batches(source):
        state["seen"] += len(batch)


@batch_app.launcher
async def batch_main(ctx: perper.Context, count: int, dicts: bool):
    source = await ctx.start(batch_generator, count=count, dicts=dicts)
    await ctx.start(batch_consumer, await ctx.start(batch_processor, source, dicts=dicts))


async def durable_batches(path: Path, count: int, dicts: bool = True) -> float:
    async with perper.open_store(f"sqlite:///{path}") as store:
        started = time.perf_counter()
        result = await Runtime(store, batch_app).run("bench", {"count": count, "dicts": dicts})
        elapsed = time.perf_counter() - started
        result.raise_on_failure()
        assert await store.head("bench/batch_processor-1") == count
        last = [item async for _, item in store.read("bench/batch_processor-1", count - 1)]
        total = count * (count - 1) // 2
        assert last == [{"value": count - 1, "total": total} if dicts else total]
        checkpoint = await store.meta_get("checkpoints", "bench/batch_consumer-2")
        assert checkpoint is not None and checkpoint.value["state"]["seen"] == count
    return elapsed


def raw_sqlite(path: Path, count: int) -> float:
    """Insert the generator's segments, encoded beforehand, as blobs: one transaction
    each, with the store's pragmas. The storage limit of one stream's writes."""
    segments = [
        (
            start,
            min(CHUNK, count - start),
            encode_segment([{"value": i} for i in range(start, min(start + CHUNK, count))]),
        )
        for start in range(0, count, CHUNK)
    ]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute(
        "CREATE TABLE segments (stream_id INTEGER NOT NULL, first_seq INTEGER NOT NULL, "
        "count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, first_seq))"
    )
    started = time.perf_counter()
    for first, size, data in segments:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO segments (stream_id, first_seq, count, data) VALUES (?, ?, ?, ?)",
            (1, first, size, data),
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


async def durable(path: Path, count: int) -> tuple[float, float]:
    """The per-item pipeline's (wall, CPU) seconds."""
    async with perper.open_store(f"sqlite:///{path}") as store:
        started, cpu = time.perf_counter(), time.process_time()
        result = await Runtime(store, app).run("bench", {"count": count})
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        result.raise_on_failure()
        assert await store.head("bench/processor-1") == count
        checkpoint = await store.meta_get("checkpoints", "bench/consumer-2")
        assert checkpoint is not None and checkpoint.value["state"]["seen"] == count
    return elapsed, cpu


async def in_memory(count: int) -> tuple[float, float]:
    """The in-memory chain's (wall, CPU) seconds."""

    async def gen() -> Any:
        for i in range(count):
            yield {"value": i}

    async def proc(source: Any) -> Any:
        total = 0
        async for item in source:
            total += item["value"]
            yield {"value": item["value"], "total": total}

    started, cpu = time.perf_counter(), time.process_time()
    seen = 0
    async for _ in proc(gen()):
        seen += 1
    assert seen == count
    return time.perf_counter() - started, time.process_time() - cpu


def bytewax_run(folder: Path, count: int) -> float | None:
    try:
        import bytewax.operators as op
        from bytewax.dataflow import Dataflow
        from bytewax.recovery import RecoveryConfig, init_db_dir
        from bytewax.testing import TestingSink, TestingSource, run_main
    except ImportError:
        return None
    db_dir = folder / "bytewax-recovery"
    db_dir.mkdir()
    init_db_dir(db_dir, 1)
    flow = Dataflow("bench")
    items = op.input("in", flow, TestingSource(range(count), batch_size=1000))
    keyed = op.key_on("key", items, lambda _: "all")

    def add(total: int | None, value: int) -> tuple[int, dict[str, int]]:
        total = (total or 0) + value
        return total, {"value": value, "total": total}

    totals = op.stateful_map("total", keyed, add)
    seen: list[Any] = []
    op.output("out", totals, TestingSink(seen))
    started = time.perf_counter()
    run_main(flow, recovery_config=RecoveryConfig(db_dir))
    elapsed = time.perf_counter() - started
    assert len(seen) == count
    return elapsed


def bytewax_batches(folder: Path, count: int) -> float | None:
    try:
        import bytewax.operators as op
        from bytewax.dataflow import Dataflow
        from bytewax.recovery import RecoveryConfig, init_db_dir
        from bytewax.testing import TestingSink, TestingSource, run_main
    except ImportError:
        return None
    db_dir = folder / "bytewax-recovery"
    db_dir.mkdir()
    init_db_dir(db_dir, 1)
    flow = Dataflow("bench_batches")
    items = op.input("in", flow, TestingSource(range(count), batch_size=CHUNK))
    total = 0

    def totals(batch: list[int]) -> list[dict[str, int]]:
        nonlocal total
        out = []
        for value in batch:
            total += value
            out.append({"value": value, "total": total})
        return out

    mapped = op.flat_map_batch("totals", items, totals)
    seen: list[Any] = []
    op.output("out", mapped, TestingSink(seen))
    started = time.perf_counter()
    run_main(flow, recovery_config=RecoveryConfig(db_dir))
    elapsed = time.perf_counter() - started
    assert len(seen) == count
    return elapsed


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds; each side's best round is compared (the median is shown)",
    )
    args = parser.parse_args()
    n = args.items
    ours_rounds, memory_rounds, peer_rounds = [], [], []
    ours_cpu: list[float] = []
    memory_cpu: list[float] = []
    batch_rounds, int_rounds, raw_rounds, peer_batch_rounds = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeat):
            # interleaved, so a noisy moment hits every side alike
            wall, cpu = asyncio.run(durable(Path(folder) / f"pipeline{round_}.db", n))
            ours_rounds.append(wall)
            ours_cpu.append(cpu)
            wall, cpu = asyncio.run(in_memory(n))
            memory_rounds.append(wall)
            memory_cpu.append(cpu)
            peer_folder = Path(folder) / f"bytewax{round_}"
            peer_folder.mkdir()
            peer_time = bytewax_run(peer_folder, n)
            if peer_time is not None:
                peer_rounds.append(peer_time)
            batch_rounds.append(
                asyncio.run(durable_batches(Path(folder) / f"batches{round_}.db", n))
            )
            int_rounds.append(
                asyncio.run(durable_batches(Path(folder) / f"ints{round_}.db", n, dicts=False))
            )
            raw_rounds.append(raw_sqlite(Path(folder) / f"raw{round_}.db", n))
            peer_folder = Path(folder) / f"bytewax-batches{round_}"
            peer_folder.mkdir()
            peer_time = bytewax_batches(peer_folder, n)
            if peer_time is not None:
                peer_batch_rounds.append(peer_time)
    ours, memory = min(ours_rounds), min(memory_rounds)
    peer = min(peer_rounds) if peer_rounds else None
    median = sorted(ours_rounds)[len(ours_rounds) // 2]
    print(
        f"items: {n:,}, generator -> processor -> consumer, checkpoints every 1,000, "
        f"best of {args.repeat} rounds (perper median {n / median:,.0f} items/s)"
    )
    print(f"perper, durable on SQLite       {n / ours:>12,.0f} items/s end to end")
    print(f"async generators in memory      {n / memory:>12,.0f} items/s")
    print(f"overhead ratio (memory/perper)  {ours / memory:>12.2f}x")
    # Diagnostic: the same ratio by CPU time (time.process_time, best round each side),
    # which a shared machine's load moves less than the wall clock; and the load itself.
    print(
        f"  by CPU time                   {min(ours_cpu) / min(memory_cpu):>12.2f}x "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    if peer is None:
        print("bytewax                         not installed (pip install bytewax to compare)")
    else:
        print(f"bytewax stateful_map, recovery  {n / peer:>12,.0f} items/s")
        print(f"peer ratio (perper/bytewax)     {peer / ours:>12.2f}x")
    batches, raw = min(batch_rounds), min(raw_rounds)
    peer_batches = min(peer_batch_rounds) if peer_batch_rounds else None
    print(
        f"batch path: ctx.read_batches + yield perper.Batch, {CHUNK:,} items per batch "
        "(one stored segment each), same three stages"
    )
    print(f"perper batches, durable SQLite  {n / batches:>12,.0f} items/s end to end")
    print(f"batch/per-item ratio            {ours / batches:>12.2f}x")
    ints = min(int_rounds)
    print(
        f"perper batches of int items     {n / ints:>12,.0f} items/s (value -> running total; "
        f"goal {GOAL:,}: {n / ints / GOAL:.2f}x)"
    )
    print(f"int/dict items ratio            {batches / ints:>12.2f}x")
    print(f"raw SQLite blob inserts         {n / raw:>12,.0f} items/s (one stream, pre-encoded)")
    print(f"storage ratio (dicts/raw)       {raw / batches:>12.2f}x (two streams written: <= 0.5)")
    print(f"storage ratio (ints/raw)        {raw / ints:>12.2f}x")
    if peer_batches is None:
        print("bytewax flat_map_batch          not installed (pip install bytewax to compare)")
    else:
        print(f"bytewax flat_map_batch, recov.  {n / peer_batches:>12,.0f} items/s")
        print(f"peer ratio (perper/bytewax)     {peer_batches / batches:>12.2f}x")


if __name__ == "__main__":
    main_()
