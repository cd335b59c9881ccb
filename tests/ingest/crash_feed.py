"""The issue's "done when" check of ingest, as a function and a command.

Two producer processes feed one ingest stream of a running ``examples/clicks.py`` run;
each is SIGKILLed ``kills`` times mid-way and restarted to resend everything from the
start with the same keys. Then: the stream must hold exactly ``2 * count`` items, each
event once; the run's outputs must equal those of an uncrashed run fed the same events in
the same stored order; ``perper export`` of the run and ``perper replay`` of the export
must exit 0.

    python -m tests.ingest.crash_feed --store sqlite:///tmp/feed.db --count 100000
    python -m tests.ingest.crash_feed --store 'ignite://127.0.0.1:10840?namespace=feed'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import perper
from perper.app import load_app
from perper.runtime import Runtime
from perper.store import LogStore, open_store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PERPER = Path(sys.executable).with_name("perper")


@dataclass
class FeedReport:
    """What :func:`feed_with_crashes` saw; ``problems`` is empty when every check passed."""

    items: int = 0
    distinct_events: int = 0
    kills: dict[int, list[int]] = field(default_factory=dict)  # producer -> sent at kill
    outputs: dict[str, int] = field(default_factory=dict)  # stream -> items
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"stream: {self.items:,} items, {self.distinct_events:,} distinct events",
            *(
                f"producer {p}: SIGKILLed after {sent} durable events"
                for p, sent in sorted(self.kills.items())
            ),
            *(
                f"output {name}: {count:,} items, equal to the uncrashed run's"
                for name, count in self.outputs.items()
            ),
            f"{self.seconds:.1f} s",
        ]
        lines += [f"PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


def _producer(url: str, run: str, producer: int, count: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(EXAMPLES / "clicks_producer.py"), "--store", url]
    command += ["--run", run, "--producer", str(producer), "--count", str(count), "--progress"]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def _feed(url: str, run: str, count: int, kills: int, report: FeedReport, deadline: float) -> None:
    # Kill each producer at these fractions of its own progress (each restart resends
    # from the first event, so its progress counts from 0 again).
    fractions = [0.3 + 0.6 * k / kills for k in range(kills)]
    processes = {p: _producer(url, run, p, count) for p in (1, 2)}
    pending = {p: b"" for p in processes}
    report.kills = {p: [] for p in processes}
    selector = selectors.DefaultSelector()

    def watch(p: int) -> None:
        stdout = processes[p].stdout
        assert stdout is not None
        selector.register(stdout.fileno(), selectors.EVENT_READ, p)

    for p in processes:
        watch(p)
    running = set(processes)
    while running:
        if time.monotonic() > deadline:
            report.problems.append("the producers did not finish in time")
            for process in processes.values():
                process.kill()
                process.wait()
                if process.stdout is not None:
                    process.stdout.close()
            return
        for key, _ in selector.select(timeout=1.0):
            p, fd = key.data, key.fd
            chunk = os.read(fd, 65536)  # raw reads: no buffer hides a line from select
            process = processes[p]
            if not chunk:
                selector.unregister(fd)
                assert process.stdout is not None
                process.stdout.close()
                code = process.wait()
                if code != 0:
                    report.problems.append(f"producer {p} exited with {code}")
                elif len(report.kills[p]) < kills:
                    report.problems.append(f"producer {p} finished before its kill")
                running.discard(p)
                continue
            *lines, pending[p] = (pending[p] + chunk).split(b"\n")
            if not lines:
                continue
            sent = int(lines[-1].split()[1])
            done = report.kills[p]
            if len(done) < kills and sent >= fractions[len(done)] * count:
                process.send_signal(signal.SIGKILL)
                code = process.wait()
                selector.unregister(fd)
                assert process.stdout is not None
                process.stdout.close()
                if code != -signal.SIGKILL:
                    report.problems.append(f"producer {p} had exited ({code}) before its kill")
                done.append(sent)
                pending[p] = b""
                processes[p] = _producer(url, run, p, count)
                watch(p)


async def _items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def _seal(url: str, run: str) -> None:
    async with open_store(url) as store:
        await perper.Producer(store, f"{run}/clicks").seal()


async def _check(url: str, run: str, count: int, report: FeedReport, folder: Path) -> None:
    app = load_app(EXAMPLES / "clicks.py")
    async with open_store(url) as store:
        clicks = await _items(store, f"{run}/clicks")
        report.items = len(clicks)
        events = [click["event"] for click in clicks]
        report.distinct_events = len(set(events))
        expected = {f"p{p}-{i}" for p in (1, 2) for i in range(count)}
        if len(clicks) != 2 * count or set(events) != expected:
            report.problems.append(
                f"the stream holds {len(clicks)} items, {len(set(events))} distinct events; "
                f"expected {2 * count} items, each of the {len(expected)} events once"
            )
        async with open_store(f"sqlite:///{folder / 'uncrashed.db'}") as reference:
            async with perper.Producer(reference, f"{run}/clicks") as feed:
                for start in range(0, len(clicks), 1000):
                    await feed.send_many(clicks[start : start + 1000])
                await feed.seal()
            (await Runtime(reference, app).run(run)).raise_on_failure()
            for name in (f"{run}/sessions-0", f"{run}/report-1"):
                mine, theirs = await _items(store, name), await _items(reference, name)
                if mine != theirs:
                    report.problems.append(
                        f"{name}: {len(mine)} items differ from the uncrashed run's {len(theirs)}"
                    )
                else:
                    report.outputs[name] = len(mine)


def feed_with_crashes(
    url: str, run: str = "feed", count: int = 100_000, kills: int = 2, timeout: float = 900.0
) -> FeedReport:
    """Run the whole check against the store at ``url`` (a fresh one); see the module."""
    report = FeedReport()
    started = time.monotonic()
    deadline = started + timeout
    env = {**os.environ, "PERPER_STORE": url}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runner = subprocess.Popen(
            [str(PERPER), "run", str(EXAMPLES / "clicks.py"), "--store", url, "--run", run, "-q"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            _feed(url, run, count, kills, report, deadline)
            asyncio.run(_seal(url, run))
            code = runner.wait(timeout=max(deadline - time.monotonic(), 1.0))
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
        if code != 0:
            report.problems.append(f"perper run exited with {code}")
        asyncio.run(_check(url, run, count, report, folder))
        export = folder / "export.sqlite"
        for args in (
            ["export", url, str(export), "--run", run],
            ["replay", str(export), str(EXAMPLES / "clicks.py")],
            ["replay", str(export), str(EXAMPLES / "clicks.py"), "--graph"],
        ):
            done = subprocess.run([str(PERPER), *args], capture_output=True, text=True)
            if done.returncode != 0:
                report.problems.append(
                    f"perper {' '.join(args[:1])} exited with {done.returncode}: "
                    f"{(done.stdout + done.stderr)[-500:]}"
                )
    report.seconds = time.monotonic() - started
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a fresh store URL")
    parser.add_argument("--run", default="feed")
    parser.add_argument("--count", type=int, default=100_000, help="events per producer")
    parser.add_argument("--kills", type=int, default=2, help="SIGKILLs per producer")
    args = parser.parse_args()
    report = feed_with_crashes(args.store, args.run, args.count, args.kills)
    print(report)
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
