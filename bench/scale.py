"""Scale-out on the distributed engine: runs of examples/basic.py shared by `perper worker`s.

    python bench/scale.py [--runs 8] [--count 20000] [--port 10882]

It starts a 2-node local Ignite cluster (``perper fabric start --nodes 2``: two node
processes joined by discovery, no persistence, in a temporary work dir), then, once with
1 and once with 2 ``perper worker examples/basic.py`` processes (each phase in its own
namespace): waits until the workers have joined (the store's ``workers`` table, see
perper/runtime/workers.py), starts ``--runs`` independent runs of the basic example
with ``count=--count``, waits until all are done, stops the workers (SIGTERM) and prints
how many executions each ran (from its ``workers`` entry) and the aggregate rate
(generator items of all runs over the time from starting the runs to the last one done).
The baseline is the 1-worker phase. The cluster is stopped at the end, also on failure.

The check is the spread: with 2 workers neither may run less than a third of the
executions (exit status 1 otherwise). On a 2-core machine the two workers and the two
nodes share the same cores, so the 2-worker rate is not expected to be higher.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import perper
from perper.app import load_app
from perper.runtime.ids import DONE, FAILED
from perper.runtime.workers import WORKERS_TABLE, registry_key
from perper.store.base import LogStore

ROOT = Path(__file__).resolve().parent.parent
BASIC = ROOT / "examples" / "basic.py"
PERPER = [sys.executable, "-m", "perper.cli"]
#: Seconds the runs of one phase may take before the benchmark gives up.
PHASE_TIMEOUT = 600.0


async def wait_for(what: str, condition: Callable[[], Awaitable[bool]], timeout: float) -> None:
    """Poll the async ``condition()`` until it is true, or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        if loop.time() > deadline:
            raise RuntimeError(f"gave up after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def registry(store: LogStore) -> dict[str, dict[str, object]]:
    """The presence leases of app basic's workers, by worker id."""
    prefix = registry_key("basic", "")
    entries = await store.meta_scan(WORKERS_TABLE, prefix=prefix)
    return {key[len(prefix) :]: meta.value for key, meta in entries}


async def phase(url: str, workers: int, runs: int, count: int) -> tuple[float, dict[str, int]]:
    """Seconds for ``runs`` runs on ``workers`` workers, and the executions each worker ran."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [*PERPER, "worker", str(BASIC), "--store", url, "--quiet"]
    procs = [
        await asyncio.create_subprocess_exec(*command, env=env, cwd=ROOT) for _ in range(workers)
    ]
    try:
        async with perper.open_store(url) as store:

            async def all_joined() -> bool:
                for proc in procs:
                    if proc.returncode is not None:
                        raise RuntimeError(f"a worker exited with status {proc.returncode}")
                return len(await registry(store)) >= workers

            await wait_for(f"{workers} worker(s) to join", all_joined, 120.0)
            app = load_app(BASIC)
            launcher = perper.Runtime(store, app, worker_id="bench-scale-launcher")
            names = [f"scale-{i}" for i in range(runs)]
            started = time.perf_counter()
            for name in names:
                await launcher.prepare_run(name, {"count": count})

            async def all_done() -> bool:
                for name in names:
                    entry = await store.meta_get("runs", name)
                    status = None if entry is None else entry.value["status"]
                    if status == FAILED:
                        raise RuntimeError(f"run {name} failed")
                    if status != DONE:
                        return False
                return True

            await wait_for(f"{runs} runs to finish", all_done, PHASE_TIMEOUT)
            elapsed = time.perf_counter() - started
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 60)
            ran = {
                name: int(str(value.get("ran", 0)))
                for name, value in (await registry(store)).items()
            }
            return elapsed, ran
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--count", type=int, default=20_000, help="items per run")
    parser.add_argument("--port", type=int, default=10882, help="thin-client port of node 0")
    parser.add_argument("--discovery-port", type=int, default=47582)
    parser.add_argument("--communication-port", type=int, default=47182)
    args = parser.parse_args()
    ports = [args.port, args.port + 1]
    with tempfile.TemporaryDirectory(prefix="perper-bench-scale-") as work_dir:
        node = ["--port", str(args.port), "--work-dir", work_dir]
        start = [
            *PERPER, "fabric", "start", *node, "--nodes", "2", "--no-persistence",
            "--discovery-port", str(args.discovery_port),
            "--communication-port", str(args.communication_port),
        ]  # fmt: skip
        print(f"starting a 2-node Ignite cluster on ports {ports} ...", file=sys.stderr)
        try:
            subprocess.run(start, check=True, cwd=ROOT, stdout=sys.stderr)
            hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
            results = {}
            for workers in (1, 2):
                url = f"ignite://{hosts}?namespace=scale{workers}-{uuid.uuid4().hex[:8]}"
                results[workers] = asyncio.run(phase(url, workers, args.runs, args.count))
        finally:
            subprocess.run([*PERPER, "fabric", "stop", *node], cwd=ROOT, stdout=sys.stderr)
    items = args.runs * args.count
    executions = args.runs * 4  # the launcher, generator, processor and consumer of each
    print(
        f"runs: {args.runs} of examples/basic.py with count={args.count:,} ({items:,} generator "
        f"items, {executions} executions) on a 2-node local Ignite cluster"
    )
    rates = {}
    for workers, (elapsed, ran) in results.items():
        rates[workers] = items / elapsed
        shares = ", ".join(f"{name} ran {n}" for name, n in sorted(ran.items()))
        label = f"{workers} worker{'s' if workers > 1 else ' '}"
        print(f"scale    {label}  {rates[workers]:>12,.0f} items/s  ({shares})")
    print(f"ratio    2 workers / 1 worker     {rates[2] / rates[1]:>8.2f}x")
    ran = results[2][1]
    least = min(ran.values()) if len(ran) == 2 else 0
    spread = len(ran) == 2 and sum(ran.values()) == executions and 3 * least >= executions
    print(
        f"spread   {'ok' if spread else 'FAILED'}: the least busy of 2 workers ran {least} of "
        f"{executions} executions (at least a third needed). On this 2-core machine the "
        "workers and both nodes share the cores: the point is the spread, not the speed-up."
    )
    return 0 if spread else 1


if __name__ == "__main__":
    sys.exit(main())
