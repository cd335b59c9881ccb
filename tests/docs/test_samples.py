"""The code samples of README.md and docs/ run as written and print what the docs say.

A sample is a fenced block right after a ``<!-- sample: ID -->`` line (invisible on a
rendered page). Each ID has a driver below that runs the block: a whole program as a
script, a fragment (stream functions, a ``with`` block) inside the small harness it
needs, a console transcript command by command, or an output block compared with what
the sample before it printed. A marked block without a driver, or a driver whose block
is gone, fails, so the docs and this file cannot drift apart silently.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.runtime import Runtime
from perper.store import LogStore
from perper.testing import check_recoverable
from tests.conftest import EXAMPLES, ROOT

#: The files whose samples are checked here (ingest.md, replay.md and simulator.md have
#: owners of their own).
DOCUMENTS = [
    "README.md",
    "docs/agents.md",
    "docs/queries.md",
    "docs/retention.md",
    "docs/recovery.md",
    "docs/fabric.md",
    "docs/ignite.md",
    "docs/ui.md",
    "docs/architecture.md",
]

_MARKER = re.compile(r"<!-- sample: ([a-z0-9-]+) -->")


@dataclass(frozen=True)
class Sample:
    id: str
    document: str
    line: int
    language: str
    code: str


def collect_samples() -> dict[str, Sample]:
    """Every marked block of :data:`DOCUMENTS`, by ID."""
    found: dict[str, Sample] = {}
    for document in DOCUMENTS:
        lines = (ROOT / document).read_text().split("\n")
        for index, line in enumerate(lines):
            marker = _MARKER.fullmatch(line.strip())
            if marker is None:
                continue
            fence = lines[index + 1]
            assert fence.startswith("```"), (
                f"{document}:{index + 1}: a sample marker must be followed by a fenced block"
            )
            end = lines.index("```", index + 2)
            sample_id = marker.group(1)
            assert sample_id not in found, f"sample {sample_id!r} is marked twice"
            found[sample_id] = Sample(
                sample_id,
                document,
                index + 1,
                fence[3:].strip(),
                "\n".join(lines[index + 2 : end]) + "\n",
            )
    return found


SAMPLES = collect_samples()
DRIVERS: dict[str, Callable[[Sample, Path], None]] = {}


def driver(sample_id: str) -> Callable[[Callable[[Sample, Path], None]], Callable[..., None]]:
    def register(fn: Callable[[Sample, Path], None]) -> Callable[..., None]:
        DRIVERS[sample_id] = fn
        return fn

    return register


# ---------------------------------------------------------------- helpers


def perper_cli(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``perper ARGS`` as a user runs it, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def python_script(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PERPER_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    return env


def checkout(tmp_path: Path) -> Path:
    """A directory that looks like a fresh clone's top: ``examples/`` and ``fixtures/``."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    shutil.copytree(ROOT / "fixtures", tmp_path / "fixtures")
    return tmp_path


def fragment_namespace(sample: Sample, **names: Any) -> dict[str, Any]:
    """Execute a fragment that defines stream functions on ``app``, as a module would."""
    namespace: dict[str, Any] = {
        "__name__": f"sample_{sample.id.replace('-', '_')}",
        "perper": perper,
        "app": perper.App(sample.id),
        **names,
    }
    exec(compile(sample.code, f"{sample.document}:{sample.line}", "exec"), namespace)
    return namespace


async def stream_items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def run_app(app: perper.App, params: dict[str, Any] | None = None) -> LogStore:
    store = perper.open_store("memory://")
    result = await asyncio.wait_for(Runtime(store, app).run("r", params or {}), 60)
    result.raise_on_failure()
    return store


def printed(ran: subprocess.CompletedProcess[str]) -> str:
    """What a command printed, stdout and stderr together (as on a terminal)."""
    return ran.stdout + ran.stderr


def run_commands(
    sample: Sample,
    cwd: Path,
    *,
    exit_codes: dict[int, int] | None = None,
    servers: frozenset[int] = frozenset(),
) -> list[subprocess.CompletedProcess[str]]:
    """Run a shell block line by line in ``cwd``, as a user pastes it: ``perper`` and
    ``python`` are this interpreter's, ``# ...`` comments are dropped, a line ending in
    ``&`` runs in the background. Each line must exit 0 (or ``exit_codes[line index]``).
    At the end the background commands are waited for (bounded), but those on the lines
    in ``servers`` (a worker), which run until stopped, get SIGTERM, and exit 0 too.
    Returns what each command printed: the foreground ones in order, then the others.
    """
    done: list[subprocess.CompletedProcess[str]] = []
    background: list[tuple[int, str, subprocess.Popen[str]]] = []
    try:
        for index, line in enumerate(sample.code.strip("\n").split("\n")):
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            words = shlex.split(command.removesuffix("&"))
            program = {"perper": [sys.executable, "-m", "perper.cli"], "python": [sys.executable]}
            argv = program[words[0]] + words[1:]
            if command.endswith("&"):
                popen = subprocess.Popen(
                    argv, cwd=cwd, env=_env(), text=True,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )  # fmt: skip
                background.append((index, command, popen))
                continue
            ran = subprocess.run(
                argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
            )
            expected = (exit_codes or {}).get(index, 0)
            assert ran.returncode == expected, f"{command}: exit {ran.returncode}: {ran.stderr}"
            done.append(ran)
    finally:
        for index, command, popen in background:
            if index in servers:
                popen.terminate()
            try:
                out, err = popen.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.communicate()
                raise AssertionError(f"{command}: still running after 60 s") from None
            assert popen.returncode == 0, f"{command}: exit {popen.returncode}: {err}"
            done.append(subprocess.CompletedProcess(popen.args, popen.returncode, out, err))
    return done


# ---------------------------------------------------------------- README.md


@driver("readme-tutorial-app")
def _tutorial_app(sample: Sample, tmp_path: Path) -> None:
    # The README's launcher, run as an app file, writes what the transcript shows.
    (tmp_path / "basic.py").write_text(sample.code)
    ran = perper_cli("run", "basic.py", "--run", "r1", "--param", "count=10", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    catted = perper_cli("streams", "cat", "r1/processor-1", cwd=tmp_path)
    assert catted.stdout == "[0, 1, 2]\n[3, 4, 5]\n[6, 7, 8]\n[9]\n"


@driver("readme-tutorial-run")
def _tutorial_transcript(sample: Sample, tmp_path: Path) -> None:
    run_transcript(sample, checkout(tmp_path))


def run_transcript(sample: Sample, cwd: Path) -> None:
    """Run each ``$ `` line of a console block and compare its output with the lines
    below it (stdout and stderr together; as sets of lines, since the two streams
    interleave differently in a pipe than on a terminal)."""
    commands: list[tuple[str, list[str]]] = []
    for line in sample.code.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            commands[-1][1].append(line)
    assert commands, f"{sample.id}: no '$ ' command"
    for command, expected in commands:
        words = command.split()
        assert words[0] == ".venv/bin/perper", command
        ran = perper_cli(*words[1:], cwd=cwd)
        assert ran.returncode == 0, f"{command}: {ran.stderr}"
        printed = (ran.stdout + ran.stderr).rstrip("\n").split("\n")
        assert sorted(printed) == sorted(expected), command


@driver("readme-batches")
def _batches(sample: Sample, tmp_path: Path) -> None:
    import itertools

    namespace = fragment_namespace(sample, itertools=itertools)
    totals = namespace["totals"]
    inputs = [perper.Batch([1, 2, 3]), perper.Batch([4, 5]), perper.Batch([6])]
    check_recoverable(totals, inputs, raise_on_failure=True)
    app = namespace["app"]

    @app.stream
    async def numbers(ctx: perper.Context) -> Any:
        for batch in inputs:
            yield batch

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(totals, await ctx.start(numbers))

    async def run() -> list[Any]:
        store = await run_app(app)
        return await stream_items(store, "r/totals-1")

    assert asyncio.run(run()) == [1, 3, 6, 10, 15, 21]


@driver("readme-producer")
def _producer(sample: Sample, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    events = [{"user": 8, "page": "/cart"}, {"user": 9, "page": "/"}]
    ids = ["evt-0002", "evt-0003"]
    body = "async def sample():\n" + textwrap.indent(sample.code, "    ")
    namespace: dict[str, Any] = {"perper": perper, "url": url, "events": events, "ids": ids}
    exec(compile(body, f"{sample.document}:{sample.line}", "exec"), namespace)

    async def run() -> tuple[list[Any], bool]:
        await namespace["sample"]()
        await namespace["sample"]()  # sent again with the same keys: stored once
        async with perper.open_store(url) as store:
            return await stream_items(store, "shop/clicks"), (
                await store.info("shop/clicks")
            ).sealed

    stored, sealed = asyncio.run(run())
    assert stored == [{"user": 7, "page": "/"}, *events]
    assert sealed


@driver("readme-queries")
def _readme_queries(sample: Sample, tmp_path: Path) -> None:
    namespace = fragment_namespace(sample)
    app, orders, lookups = namespace["app"], namespace["orders"], namespace["lookups"]

    # A query answers from the items stored when it runs (it does not wait for more): the
    # requests come once every order is stored, so each answer covers all of them.
    @app.stream
    async def requests(ctx: perper.Context, orders: perper.StreamRef) -> Any:
        async for _ in ctx.read_batches(orders):
            pass
        for user in [3, 42]:
            yield user

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        found = await ctx.start(orders, count=30_000)
        await ctx.start(lookups, await ctx.start(requests, found), found)

    async def run() -> list[Any]:
        return await stream_items(await run_app(app), "r/lookups-2")

    expected = [
        [i for i in range(30_000) if i % 10_000 == user and i / 100 > 10.0] for user in [3, 42]
    ]
    assert expected == [[10_003, 20_003], [10_042, 20_042]]
    assert asyncio.run(run()) == expected


@driver("readme-library")
def _library(sample: Sample, tmp_path: Path) -> None:
    (tmp_path / "library.py").write_text(sample.code)
    ran = python_script(tmp_path / "library.py", cwd=checkout(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "10 {'value': 10}\n11 {'value': 11}\n"


@driver("readme-agents-commands")
def _agents_commands(sample: Sample, tmp_path: Path) -> None:
    ran = run_commands(sample, checkout(tmp_path), servers=frozenset({3}))
    assert "127 calls answered correctly (63 by container 0, 64 by container 1)" in printed(ran[0])
    assert 1 <= int(ran[3].stdout) <= 6  # perper call printed the result
    assert "u1.container-1" in printed(ran[4]) and "destroyed" in printed(ran[4])  # agents ls


@driver("readme-ingest-commands")
def _ingest_commands(sample: Sample, tmp_path: Path) -> None:
    import json

    cwd = checkout(tmp_path)
    with (cwd / "events.jsonl").open("w") as events:
        for i in range(3):
            event = {"event": f"file-{i}", "user": i, "page": "/", "time": 50_000.0 + i}
            events.write(json.dumps(event) + "\n")
    ran = run_commands(sample, cwd)
    assert "3 items sent from 3 lines" in printed(ran[1])
    assert "the stream holds 100,003 items, sealed" in printed(ran[1])
    # The run ended with the seal (run_commands waited for it): its report is final.
    catted = perper_cli("streams", "cat", "shop/report-1", cwd=cwd)
    final = json.loads(catted.stdout.strip().split("\n")[-1])
    assert final["final"] is True and final["clicks"] == 100_003


@driver("readme-query-commands")
def _query_commands(sample: Sample, tmp_path: Path) -> None:
    import json

    ran = run_commands(sample, checkout(tmp_path))
    rows = [json.loads(line) for line in printed(ran[1]).split("\n") if line]
    assert [row["seq"] for row in rows] == list(range(4318, 100_000, 10_000))
    assert all(row["item"]["user"] == 4242 for row in rows)
    assert "user int, amount float" in printed(ran[2])


@driver("readme-replay-commands")
def _replay_commands(sample: Sample, tmp_path: Path) -> None:
    cwd = checkout(tmp_path)
    # The block follows the tutorial: run r1 is in the default log.
    assert perper_cli("run", "examples/basic.py", "--run", "r1", cwd=cwd).returncode == 0
    ran = run_commands(sample, cwd, exit_codes={3: 1})  # the failing seed fails
    assert "the code reproduces the log" in printed(ran[1])
    assert "shrunk" in printed(ran[3]) and "reproduce the shrunk failure" in printed(ran[3])
    assert "ok: every output equals the recorded run's" in printed(ran[4])


# ---------------------------------------------------------------- docs/agents.md


@driver("agents-usage")
def _agents_usage(sample: Sample, tmp_path: Path) -> None:
    write_usage_app(sample, tmp_path)
    ran = perper_cli("run", "usage.py", "--run", "usage-1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    listed = perper_cli("agents", "ls", "--json", cwd=tmp_path)
    statuses = {row["instance"]: row["status"] for row in json_rows(listed)}
    assert statuses == {"usage-1": "done", "usage-1.container-1": "destroyed"}


def write_usage_app(sample: Sample, tmp_path: Path) -> None:
    (tmp_path / "usage.py").write_text(SAMPLES["agents-usage"].code)
    shutil.copy(EXAMPLES / "agents" / "container.py", tmp_path / "container.py")


def json_rows(ran: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    import json

    assert ran.returncode == 0, ran.stderr
    rows: list[dict[str, Any]] = json.loads(ran.stdout)
    return rows


@driver("agents-outside-call")
def _agents_outside_call(sample: Sample, tmp_path: Path) -> None:
    write_usage_app(sample, tmp_path)
    assert perper_cli("run", "usage.py", "--run", "usage-1", cwd=tmp_path).returncode == 0
    url = "sqlite:///.perper/perper.db"
    script = "import asyncio, perper\n\nasync def main():\n"
    script += textwrap.indent(sample.code, "    ") + "    print(n)\n\n"
    script += "asyncio.run(main())\nasyncio.run(main())\n"  # the same key: the same result
    (tmp_path / "outside.py").write_text(script.replace("(url)", f"({url!r})"))
    worker = subprocess.Popen(
        [sys.executable, "-m", "perper.cli", "worker", "usage.py", "-q"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ran = python_script(tmp_path / "outside.py", cwd=tmp_path)
    finally:
        worker.terminate()
        _, worker_err = worker.communicate(timeout=30)
    assert ran.returncode == 0, ran.stderr + worker_err
    first, again = (int(line) for line in ran.stdout.split())
    assert 1 <= first <= 6 and again == first


# ---------------------------------------------------------------- docs/queries.md


@driver("queries-big-spenders")
def _big_spenders(sample: Sample, tmp_path: Path) -> None:
    namespace = fragment_namespace(sample)
    app, orders, big_spenders = namespace["app"], namespace["orders"], namespace["big_spenders"]

    @app.stream
    async def requests(ctx: perper.Context, orders: perper.StreamRef) -> Any:
        async for _ in ctx.read_batches(orders):  # once every order is stored, as above
            pass
        yield 5

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        found = await ctx.start(orders, count=25_000)
        await ctx.start(big_spenders, await ctx.start(requests, found), found)

    async def run() -> list[Any]:
        return await stream_items(await run_app(app), "r/big_spenders-2")

    rows = [{"user": 5, "amount": i / 100} for i in (10_005, 20_005)]
    assert asyncio.run(run()) == [{"user": 5, "orders": rows}]


# ---------------------------------------------------------------- docs/retention.md


@driver("retention-parsed")
def _retention_parsed(sample: Sample, tmp_path: Path) -> None:
    namespace = fragment_namespace(sample, parse=str.upper)
    app, parsed = namespace["app"], namespace["parsed"]
    check_recoverable(parsed, ["a", "b", "c"], raise_on_failure=True)

    @app.stream
    async def lines(ctx: perper.Context, count: int) -> Any:
        for i in range(count):
            yield f"line {i}"

    @app.stream(recovery="checkpoint", checkpoint_every=100)
    async def counted(ctx: perper.Context, source: perper.StreamRef) -> Any:
        async for _ in ctx.read(source):
            ctx.state["n"] = ctx.state.get("n", 0) + 1
        yield ctx.state.get("n", 0)

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(counted, await ctx.start(parsed, await ctx.start(lines, count=5_000)))

    async def run() -> tuple[list[Any], int, int]:
        store = await run_app(app)
        return (
            await stream_items(store, "r/counted-2"),
            await store.first_seq("r/parsed-1"),
            await store.head("r/parsed-1"),
        )

    counts, first, head = asyncio.run(run())
    assert counts == [5_000] and head == 5_000
    assert first > 0  # the ephemeral stream was trimmed behind its reader


# ---------------------------------------------------------------- docs/recovery.md


@driver("recovery-two-modes")
def _two_modes(sample: Sample, tmp_path: Path) -> None:
    # The two definitions share a name on purpose (before / after); run each one.
    first, second = sample.code.split("\n\n@app.stream(recovery=")
    for code in (first, "@app.stream(recovery=" + second):
        part = Sample(sample.id, sample.document, sample.line, sample.language, code)
        total = fragment_namespace(part)["total"]
        check_recoverable(total, [5, 7, 11, 13], raise_on_failure=True)


@driver("recovery-epilogue")
def _epilogue(sample: Sample, tmp_path: Path) -> None:
    total = fragment_namespace(sample)["total"]
    check = check_recoverable(total, list(range(20)), raise_on_failure=True)
    assert check.output_items == 1


@driver("recovery-check")
def _check(sample: Sample, tmp_path: Path) -> None:
    second = SAMPLES["recovery-two-modes"].code.split("\n\n@app.stream(recovery=")[1]
    total = fragment_namespace(
        Sample(sample.id, sample.document, sample.line, "python", "@app.stream(recovery=" + second)
    )["total"]
    namespace = fragment_namespace(sample, total=total)
    assert namespace["check"].ok


@driver("recovery-local-sum")
def _local_sum(sample: Sample, tmp_path: Path) -> None:
    printed: list[Any] = []
    fragment_namespace(sample, check_recoverable=check_recoverable, print=printed.append)
    assert len(printed) == 1 and not printed[0].ok


@driver("recovery-local-sum-output")
def _local_sum_output(sample: Sample, tmp_path: Path) -> None:
    printed: list[Any] = []
    fragment_namespace(
        SAMPLES["recovery-local-sum"], check_recoverable=check_recoverable, print=printed.append
    )
    assert [str(printed[0]) + "\n"] == [sample.code]


# ---------------------------------------------------------------- the tests


def test_every_marked_sample_has_a_driver_and_every_driver_a_sample() -> None:
    assert set(SAMPLES) == set(DRIVERS)


# A whole shell block is a handful of processes over 100,000 items: seconds each, more
# under load, so they are `slow` (`-m "not slow"` leaves the rest, well under 30 s).
@pytest.mark.parametrize(
    "sample_id",
    [
        pytest.param(sample_id, marks=[pytest.mark.slow] if sample_id.endswith("-commands") else [])
        for sample_id in sorted(SAMPLES)
    ],
)
def test_the_sample_runs_as_the_docs_say(sample_id: str, tmp_path: Path) -> None:
    sample = SAMPLES[sample_id]
    if sample_id not in DRIVERS:
        pytest.fail(f"{sample.document}:{sample.line}: sample {sample_id!r} has no driver")
    DRIVERS[sample_id](sample, tmp_path)
