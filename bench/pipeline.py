"""End-to-end throughput of a durable three-step pipeline beside its in-memory twin.

    python bench/pipeline.py [--items 1000000]

generator -> processor -> consumer over N items, every hop appended durably to a SQLite
log, the processor and the consumer in checkpoint mode checkpointing every 1,000 items.
Beside it, in the same run: the same three async generators chained in memory with no
store (the overhead ratio), and — where bytewax installs from PyPI — bytewax's
``stateful_map`` over the same items with recovery enabled (the peer ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.runtime import Runtime

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


async def durable(path: Path, count: int) -> float:
    async with perper.open_store(f"sqlite:///{path}") as store:
        started = time.perf_counter()
        result = await Runtime(store, app).run("bench", {"count": count})
        elapsed = time.perf_counter() - started
        result.raise_on_failure()
        assert await store.head("bench/processor-1") == count
        checkpoint = await store.meta_get("checkpoints", "bench/consumer-2")
        assert checkpoint is not None and checkpoint.value["state"]["seen"] == count
    return elapsed


async def in_memory(count: int) -> float:
    async def gen() -> Any:
        for i in range(count):
            yield {"value": i}

    async def proc(source: Any) -> Any:
        total = 0
        async for item in source:
            total += item["value"]
            yield {"value": item["value"], "total": total}

    started = time.perf_counter()
    seen = 0
    async for _ in proc(gen()):
        seen += 1
    assert seen == count
    return time.perf_counter() - started


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
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.repeat):
            # interleaved, so a noisy moment hits every side alike
            ours_rounds.append(asyncio.run(durable(Path(folder) / f"pipeline{round_}.db", n)))
            memory_rounds.append(asyncio.run(in_memory(n)))
            peer_folder = Path(folder) / f"bytewax{round_}"
            peer_folder.mkdir()
            peer_time = bytewax_run(peer_folder, n)
            if peer_time is not None:
                peer_rounds.append(peer_time)
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
    if peer is None:
        print("bytewax                         not installed (pip install bytewax to compare)")
    else:
        print(f"bytewax stateful_map, recovery  {n / peer:>12,.0f} items/s")
        print(f"peer ratio (perper/bytewax)     {peer / ours:>12.2f}x")


if __name__ == "__main__":
    main_()
