"""Append and read-back throughput of IgniteStore beside raw pyignite on the same node.

    python bench/ignite.py [--url ignite://127.0.0.1:10800] [--items 200000] [--batch 1000]

Without --url it starts its own single node with perper.fabric (persistence on, in a
temporary work directory, on ports no default node uses) and stops it afterwards.

The baselines are what one would write by hand with pyignite: encode each batch with msgpack
(ormsgpack: the same bytes IgniteStore stores) and ``put_all`` it under its own key, one request per
batch; read back with ``get_all`` of 64 keys at a time, decoding every segment. They run with
pyignite's AioClient (what IgniteStore uses) and with its sync Client, so the numbers also show
what the asyncio client costs. Two more lines break the append down: the raw
``put_if_absent`` (the conditional write IgniteStore commits a batch with, see
perper/store/ignite.py) and the transport alone (bytes encoded before the clock).

A shared two-core box is noisy (the node's JVM, its checkpoints, other processes), so the
contenders are interleaved batch by batch, in a rotating order, each timing only its own
requests: a pause hits them all alike. Each writes to fresh keys; ``--warmup`` rounds let a
fresh JVM compile its hot paths, then ``--rounds`` repeat the whole run. Rates are the
median over rounds; a ratio is the median of the rounds' own ratios, each taken between
contenders interleaved in that round, so a round slowed as a whole cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import ormsgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pyignite import AioClient, Client

import perper
from bench.pipeline import app as pipeline_app
from perper import codec, fabric
from perper.runtime import Runtime
from perper.store.ignite import SEGMENTS_CACHE, IgniteStore

CHUNK = 64
Batch = list[dict[str, int]]


def make_batches(items: int, batch: int) -> list[Batch]:
    return [
        [{"value": i} for i in range(start, min(start + batch, items))]
        for start in range(0, items, batch)
    ]


def keys_for(name: str, count: int) -> list[str]:
    prefix = f"bench-{name}-{uuid.uuid4().hex[:12]}|s|s|"
    return [f"{prefix}{n}" for n in range(count)]


async def one_round(url: str, batches: list[Batch]) -> dict[str, tuple[float, float]]:
    """Seconds spent appending and reading by each contender, interleaved batch by batch."""
    addresses = IgniteStore.from_url(url).addresses
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    store = IgniteStore.from_url(f"{url}?namespace={namespace}")
    await store.head("s")  # connected before the clock starts, like the raw clients
    aio = AioClient(partition_aware=len(addresses) > 1)
    sync = Client(partition_aware=len(addresses) > 1)
    await aio.connect(addresses)
    sync.connect(addresses)
    try:
        aio_cache = await aio.get_cache(SEGMENTS_CACHE)
        sync_cache = sync.get_cache(SEGMENTS_CACHE)
        keys = {name: keys_for(name, len(batches)) for name in ("aio", "pia", "sync", "bytes")}
        encoded = [codec.pack_segment(b) for b in batches]
        seq = 0

        async def store_append(n: int) -> None:
            nonlocal seq
            seq = await store.append("s", seq, batches[n])

        async def aio_append(n: int) -> None:
            await aio_cache.put_all({keys["aio"][n]: ormsgpack.packb(batches[n])})

        async def pia_append(n: int) -> None:
            data = ormsgpack.packb(batches[n])
            assert await aio_cache.put_if_absent(keys["pia"][n], data)

        async def sync_append(n: int) -> None:
            sync_cache.put_all({keys["sync"][n]: ormsgpack.packb(batches[n])})

        async def bytes_append(n: int) -> None:
            await aio_cache.put_all({keys["bytes"][n]: encoded[n]})

        appends: dict[str, Callable[[int], Awaitable[None]]] = {
            "store": store_append, "aio": aio_append, "pia": pia_append,
            "sync": sync_append, "bytes": bytes_append,
        }  # fmt: skip
        append_time = await interleave(appends, len(batches))
        await store.close()

        reader = IgniteStore.from_url(f"{url}?namespace={namespace}")  # a cold cache
        await reader.meta_get("runs", "connect")
        store_items = reader.read_batches("s")

        async def store_read(_: int) -> int:
            _, items = await anext(store_items)
            return len(items)

        async def aio_read(i: int) -> int:
            chunk = keys["aio"][i * CHUNK : (i + 1) * CHUNK]
            found = await aio_cache.get_all(chunk)
            return sum(len(codec.unpack_segment(found[key])) for key in chunk)

        async def sync_read(i: int) -> int:
            chunk = keys["sync"][i * CHUNK : (i + 1) * CHUNK]
            found = sync_cache.get_all(chunk)
            return sum(len(codec.unpack_segment(found[key])) for key in chunk)

        chunks = -(-len(batches) // CHUNK)
        read_time = {"store": 0.0, "aio": 0.0, "sync": 0.0}
        counts = dict.fromkeys(read_time, 0)
        for i in range(chunks):
            # the store's reader yields one segment per step; a raw step is a chunk of them
            steps = min(CHUNK, len(batches) - i * CHUNK)
            order = ["store", "aio", "sync"][i % 3 :] + ["store", "aio", "sync"][: i % 3]
            for name in order:
                started = time.perf_counter()
                if name == "store":
                    for _ in range(steps):
                        counts[name] += await store_read(0)
                else:
                    counts[name] += await (aio_read if name == "aio" else sync_read)(i)
                read_time[name] += time.perf_counter() - started
        await close_generator(store_items)
        await reader.close()
        total = sum(len(b) for b in batches)
        assert counts == dict.fromkeys(counts, total), counts
    finally:
        await aio.close()
        sync.close()
    return {name: (append_time[name], read_time.get(name, 0.0)) for name in append_time}


async def interleave(
    steps: dict[str, Callable[[int], Awaitable[None]]], count: int
) -> dict[str, float]:
    spent = dict.fromkeys(steps, 0.0)
    names = list(steps)
    for n in range(count):
        rotation = n % len(names)
        for name in names[rotation:] + names[:rotation]:
            started = time.perf_counter()
            await steps[name](n)
            spent[name] += time.perf_counter() - started
    return spent


async def close_generator(generator: AsyncIterator[Any]) -> None:
    aclose = getattr(generator, "aclose", None)
    if aclose is not None:
        await aclose()


async def concurrent_appends(url: str, batches: list[Batch], streams: int) -> float:
    """Seconds to append the batches spread over ``streams`` streams written at once (as the
    runtime's executions do); a sync client could only do them one after another."""
    store = IgniteStore.from_url(f"{url}?namespace=bench-{uuid.uuid4().hex[:12]}")
    await store.head("s")

    async def writer(name: str, mine: list[Batch]) -> None:
        seq = 0
        for batch in mine:
            seq = await store.append(name, seq, batch)

    started = time.perf_counter()
    await asyncio.gather(*(writer(f"s{i}", batches[i::streams]) for i in range(streams)))
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


async def pipeline(url: str, count: int) -> float:
    """Seconds the 3-stage pipeline of bench/pipeline.py takes over ``count`` items on
    the store at ``url`` (every hop durable, checkpoints every 1,000 items)."""
    async with perper.open_store(url) as store:
        await store.head("connect")  # connected before the clock starts
        started = time.perf_counter()
        result = await Runtime(store, pipeline_app).run("bench", {"count": count})
        elapsed = time.perf_counter() - started
        result.raise_on_failure()
        assert await store.head("bench/processor-1") == count
    return elapsed


def pipelines(url: str, count: int, rounds: int) -> None:
    """The pipeline on Ignite beside the same on SQLite, alternating, median of ``rounds``
    (none: skipped)."""
    if rounds <= 0:
        return
    ignite, sqlite = [], []
    with tempfile.TemporaryDirectory(prefix="perper-bench-pipeline-") as folder:
        for n in range(rounds):
            ignite.append(
                asyncio.run(pipeline(f"{url}?namespace=pipe-{uuid.uuid4().hex[:12]}", count))
            )
            sqlite.append(asyncio.run(pipeline(f"sqlite:///{folder}/{n}.db", count)))
    on_ignite, on_sqlite = count / statistics.median(ignite), count / statistics.median(sqlite)
    print(
        f"pipeline 3 stages over {count:,} items (bench/pipeline.py, every hop durable), median "
        f"of {rounds}"
    )
    print(f"{'pipeline on the Ignite node':<42}{on_ignite:>12,.0f} items/s")
    print(f"{'pipeline on SQLite (baseline)':<42}{on_sqlite:>12,.0f} items/s")
    print(f"{'pipeline ratio Ignite / SQLite':<42}{on_ignite / on_sqlite:>12.2f}x")


def run(url: str, items: int, batch: int, rounds: int, warmup: int, note: str) -> None:
    batches = make_batches(items, batch)
    for _ in range(warmup):  # a fresh JVM compiles its hot paths during the first rounds
        asyncio.run(one_round(url, batches))
    results = [asyncio.run(one_round(url, batches)) for _ in range(rounds)]
    concurrent = [asyncio.run(concurrent_appends(url, batches, 4)) for _ in range(rounds)]

    def rate(name: str, which: int) -> float:
        return items / statistics.median(r[name][which] for r in results)

    def paired(name: str, baseline: str, which: int) -> float:
        """The median over rounds of ``name``'s rate / ``baseline``'s in the same round."""
        return statistics.median(r[baseline][which] / r[name][which] for r in results)

    def line(label: str, value: float, note: str = "") -> None:
        print(f"{label:<42}{value:>12,.0f} items/s{note}")

    def ratio(label: str, value: float) -> None:
        print(f"{label:<42}{value:>12.2f}x")

    print(
        f"items: {items:,} of shape {batches[0][0]} in batches of {batch:,}, median of "
        f"{rounds} rounds, against {url} ({note})"
    )
    line("append   IgniteStore.append", rate("store", 0))
    line("append   raw AioClient put_all per batch", rate("aio", 0))
    line("append   raw sync Client put_all per batch", rate("sync", 0))
    line("append   raw AioClient put_if_absent", rate("pia", 0), " (IgniteStore's commit)")
    line("append   raw AioClient put_all, bytes only", rate("bytes", 0), " (pre-encoded)")
    line("append   IgniteStore, 4 streams at once", items / statistics.median(concurrent))
    ratio("append   ratio store / raw AioClient", paired("store", "aio", 0))
    ratio("append   ratio store / raw put_if_absent", paired("store", "pia", 0))
    ratio("append   ratio raw AioClient / raw sync", paired("aio", "sync", 0))
    line("read     IgniteStore.read_batches", rate("store", 1), " (decoded)")
    line(f"read     raw AioClient get_all/{CHUNK}", rate("aio", 1), " (decoded)")
    line(f"read     raw sync Client get_all/{CHUNK}", rate("sync", 1), " (decoded)")
    ratio("read     ratio store / raw AioClient", paired("store", "aio", 1))
    ratio("read     ratio raw AioClient / raw sync", paired("aio", "sync", 1))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an ignite:// URL; default: start a node for the run")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    parser.add_argument("--pipeline-items", type=int, default=1_000_000)
    parser.add_argument("--pipeline-rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=10970, help="thin-client port of the own node")
    parser.add_argument("--discovery-port", type=int, default=48800)
    parser.add_argument("--communication-port", type=int, default=48790)
    args = parser.parse_args()
    if args.url:
        run(args.url, args.items, args.batch, args.rounds, args.warmup, "given node")
        pipelines(args.url, args.pipeline_items, args.pipeline_rounds)
        return
    with tempfile.TemporaryDirectory(prefix="perper-bench-ignite-") as work_dir:
        options: dict[str, Any] = {
            "port": args.port,
            "work_dir": work_dir,
            "discovery_port": args.discovery_port,
            "communication_port": args.communication_port,
        }
        print(
            f"starting an Ignite node on 127.0.0.1:{args.port} in {work_dir} ...", file=sys.stderr
        )
        fabric.start(persistence=True, **options)
        try:
            run(
                f"ignite://127.0.0.1:{args.port}",
                args.items,
                args.batch,
                args.rounds,
                args.warmup,
                "own node, persistence on",
            )
            pipelines(f"ignite://127.0.0.1:{args.port}", args.pipeline_items, args.pipeline_rounds)
        finally:
            fabric.stop(port=args.port, work_dir=work_dir)


if __name__ == "__main__":
    main()
