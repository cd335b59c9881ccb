"""Time from restart to first new output in checkpoint mode, for short and long streams.

    python bench/recovery.py [--sizes 10000 1000000]

A checkpoint-mode function (checkpoint every 1,000 items) runs over an input of N items
on a SQLite log and is crashed (as by kill -9) 500 items after a checkpoint near the
end. A fresh worker then recovers it; the clock runs from the worker's start to the
first output item beyond what the crashed one had stored. Resuming from a checkpoint
should cost the same for any N; the ratio of the longest to the shortest is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import perper
from perper.runtime import Runtime
from perper.runtime.leases import Lease
from perper.store.sqlite import SQLiteStore
from perper.streamref import StreamRef

app = perper.App("recovery")


@app.stream(recovery="checkpoint", checkpoint_every=1000)
async def running_total(ctx: perper.Context, source: perper.StreamRef):
    state = ctx.state
    state.setdefault("total", 0)
    async for item in ctx.read(source):
        state["total"] += item["value"]
        yield {"total": state["total"]}


class Crash(BaseException):
    pass


class TimedStore(SQLiteStore):
    """Notes when the first segment beyond ``watch_head`` is written."""

    watch_head = -1
    first_new_at: float | None = None

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        await super().write_segment(stream, seq, count, data, epoch)
        if self.first_new_at is None and stream == EXECUTION and seq + count > self.watch_head >= 0:
            self.first_new_at = time.perf_counter()


EXECUTION = "bench/running_total-0"


async def measure(path: Path, size: int) -> tuple[float, int]:
    store = TimedStore(path)
    source = "bench/input"
    for first in range(0, size, 10_000):
        await store.append(
            source, first, [{"value": i} for i in range(first, min(first + 10_000, size))]
        )
    await store.seal(source)
    setup = Runtime(store, app, worker_id="setup")
    params = setup._pack_params(running_total, {"source": StreamRef(source)})
    await setup.create_execution(EXECUTION, "bench", running_total, params, parent=None)

    crash_at = max(size - 1000, 1000) // 1000 * 1000 - 500
    crashing = Runtime(store, app, worker_id="crashing", batch_size=100)

    def crash(execution: str, position: int) -> None:
        if position == crash_at:
            raise Crash()

    crashing._boundary_hook = crash
    with contextlib.suppress(Crash):
        await crashing.execute(EXECUTION)
    stored = await store.head(EXECUTION)
    # The crashed worker's lease has expired (as it would after lease_ttl).
    entry = await store.meta_get("leases", EXECUTION)
    assert entry is not None
    expired = Lease(None, entry.value["epoch"]).to_meta()
    await store.meta_cas("leases", EXECUTION, expired, version=entry.version)

    store.watch_head = stored
    recovering = Runtime(store, app, worker_id="recovering", batch_size=1)
    started = time.perf_counter()
    task = asyncio.ensure_future(recovering.execute(EXECUTION))
    while store.first_new_at is None and not task.done():
        await asyncio.sleep(0)
    elapsed = (store.first_new_at or time.perf_counter()) - started
    await task
    assert await store.head(EXECUTION) == size
    await store.close()
    return elapsed, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            best = min(
                asyncio.run(measure(Path(folder) / f"r{size}-{i}.db", size))[0]
                for i in range(args.repeat)
            )
            results[size] = best
            print(
                f"stream of {size:>9,} items: restart to first new output {best * 1000:8.2f} ms"
                f" (best of {args.repeat})"
            )
    shortest, longest = min(results), max(results)
    print(f"ratio {longest:,} / {shortest:,} items: {results[longest] / results[shortest]:.2f}x")


if __name__ == "__main__":
    main()
