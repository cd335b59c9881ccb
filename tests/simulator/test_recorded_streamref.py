"""A recorded run whose launcher takes a ``perper.StreamRef`` to a stream outside the run
(issue 14): ``perper run APP --param clicks=shop/clicks``, exported with ``perper export
--run``, is a workload for ``python -m simulator run APP --log`` and ``sim.from_log``."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import perper
from perper.app import load_app
from simulator.cli import main
from simulator.recorded import load_recorded
from simulator.testing import SimHelper

from .conftest import APPS, ROOT

APP = APPS / "outside_clicks.py"
CLICKS = "shop/clicks"
PAGES = ["/", "/search", "/cart", "/checkout"]
#: Clicks sent before the run starts; the rest are sent while it runs.
BEFORE, TOTAL = 10, 30


def click(i: int) -> dict[str, Any]:
    return {"user": i % 4, "page": PAGES[(i * 7) % 4], "i": i}


async def send(
    url: str, start: int, stop: int, *, stream: str, seal: bool = False, index: bool = False
) -> None:
    """Clicks ``start..stop-1`` into ``stream`` with a Producer, five per batch (the
    producer declaring an index on ``user`` if ``index``)."""
    fields = {"user": int} if index else None
    async with (
        perper.open_store(url) as store,
        perper.Producer(store, stream, index=fields) as clicks,
    ):
        for first in range(start, stop, 5):
            batch = [click(i) for i in range(first, min(stop, first + 5))]
            await clicks.send_many(batch, keys=[f"c{c['i']}" for c in batch])
        if seal:
            await clicks.seal()


async def head(url: str, stream: str) -> int:
    async with perper.open_store(url) as store:
        return await store.head(stream)


def perper_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False,
    )  # fmt: skip


def record(
    url: str,
    app: Path = APP,
    *,
    first: str = "r/counts-0",
    stream: str = CLICKS,
    index: bool = False,
) -> None:
    """Run ``app`` for real as run ``r`` over ``stream`` (``shop/clicks``, passed as
    ``--param clicks=shop/clicks``; or the run's ingest stream ``r/clicks``): 10 clicks are
    there before it starts, 20 more are sent (then the stream sealed) once ``first``
    holds 10 items. An unrelated stream ``shop/other`` sits beside it."""
    asyncio.run(send(url, 0, BEFORE, stream=stream, index=index))

    async def other() -> None:
        async with perper.open_store(url) as store:
            await store.append("shop/other", 0, ["not read by the run"])

    asyncio.run(other())
    param = ["--param", f"clicks={stream}"] if stream == CLICKS else []
    run = subprocess.Popen(
        [sys.executable, "-m", "perper.cli", "run", str(app), "--store", url, "--run", "r",
         *param, "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while asyncio.run(head(url, first)) < BEFORE:
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the run never read the first clicks"
            time.sleep(0.05)
        asyncio.run(send(url, BEFORE, TOTAL, stream=stream, seal=True, index=index))
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, out


def export(url: str, log: Path, *extra: str) -> Path:
    done = perper_cli("export", url, str(log), "--run", "r", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return log


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def changed_app(tmp_path: Path) -> Path:
    """A copy whose ``counts`` counts a user's third click twice: its first differing
    item is user 0's third click, seq 8 of ``r/counts-0``."""
    source = APP.read_text()
    changed = source.replace(
        "seen[user] = seen.get(user, 0) + 1\n",
        "seen[user] = seen.get(user, 0) + (2 if seen.get(user, 0) == 2 else 1)\n",
        1,
    )
    assert changed != source
    path = tmp_path / "outside_changed.py"
    path.write_text(changed)
    return path


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store of the production run (SQLite)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('production') / 'prod.db'}"
    record(url)
    return url


@pytest.fixture(scope="module")
def exported(production: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``perper export PROD rec.sqlite --run r``."""
    return export(production, tmp_path_factory.mktemp("exported") / "rec.sqlite")


def live_start(log: Path) -> int:
    """Where the recorded ``live`` read started (its recorded effect)."""

    async def read() -> int:
        async with perper.open_store(f"sqlite:///{log}") as store:
            effects = [item async for _, item in store.read("r/live-1#effects")]
        (start,) = [value for kind, value in effects if kind == "live"]
        return int(start)

    return asyncio.run(read())


def test_export_of_the_run_brings_the_outside_stream_with_its_keys_and_seal_and_nothing_else(
    exported: Path,
) -> None:
    async def check() -> None:
        async with perper.open_store(f"sqlite:///{exported}") as store:
            names = [info.name for info in await store.streams() if "#" not in info.name]
            assert names == ["r/counts-0", "r/live-1", CLICKS]
            assert [item async for _, item in store.read(CLICKS)] == [
                click(i) for i in range(TOTAL)
            ]
            assert (await store.info(CLICKS)).sealed
            # Keys came along: a producer resending a click gets its stored seq back.
            assert await store.lookup_keys(CLICKS, ["c0", "c29"]) == {"c0": 0, "c29": 29}
            assert [key for key, _ in await store.meta_scan("executions")] == [
                "r/counts-0",
                "r/live-1",
                "r/main",
            ]

    asyncio.run(check())


def test_the_clicks_a_live_read_found_are_preloaded_and_the_rest_fed_in_recorded_batches(
    exported: Path,
) -> None:
    start = live_start(exported)
    # The recording is meaningful: the live read began after some clicks, before others.
    assert 0 < start < TOTAL, start
    recorded = load_recorded(exported, load_app(APP))
    assert recorded.params == {"clicks": perper.StreamRef(CLICKS)}
    assert recorded.inputs == {CLICKS: TOTAL}
    assert recorded.preload[CLICKS] == [click(i) for i in range(start)]
    feed = recorded.feeds[CLICKS]
    assert feed.first == start and feed.sealed
    assert [item for batch in feed.batches for item in batch] == [
        click(i) for i in range(start, TOTAL)
    ]
    assert all(1 <= len(batch) <= 5 for batch in feed.batches)
    # The run's outputs are the reference; the stream it read from outside is not.
    assert set(recorded.reference.heads) == {"r/counts-0", "r/live-1"}
    assert recorded.reference.items["r/live-1"][0] == [start, click(start)["page"]]
    assert recorded.effect_count == sum(
        len(items) for name, items in recorded.preload.items() if "#" in name
    )


def test_simulator_run_log_passes_for_a_range_of_seeds_with_every_fault_kind(
    exported: Path,
) -> None:
    code, out = invoke(str(APP), "--log", str(exported), "--seeds", "0..59", "--faults", "all")
    assert code == 0, out
    assert f"input '{CLICKS}' from outside the run: {TOTAL} items" in out
    assert "60 seeds run, 0 failures" in out
    assert "ok: every output equals the recorded run's" in out


def test_the_unexported_production_store_is_a_log_too(production: str) -> None:
    code, out = invoke(str(APP), "--log", production.removeprefix("sqlite:///"), "--seeds", "0..9")
    assert code == 0, out
    assert "10 seeds run, 0 failures" in out


def test_a_changed_copy_fails_naming_the_function_and_the_first_differing_seq(
    exported: Path, tmp_path: Path
) -> None:
    code, out = invoke(
        str(changed_app(tmp_path)), "--log", str(exported), "--seeds", "0..4", "--shrink",
        "--save", str(tmp_path / "f.db"),
    )  # fmt: skip
    assert code == 1, out
    assert "'r/counts-0' holds another item at seq 8 than the recorded run" in out, out
    assert "function: counts" in out
    assert f"expected: {{'user': 0, 'page': {click(8)['page']!r}, 'n': 3}}" in out, out
    command = re.search(r"^reproduce: (python -m simulator run .*)$", out, re.MULTILINE)
    assert command is not None and "--log" in command.group(1)
    again, again_out = invoke(*shlex.split(command.group(1))[4:], "--save", str(tmp_path / "a.db"))
    assert again == 1 and "seq 8" in again_out, again_out


def test_sim_from_log_passes_for_the_app_and_fails_for_the_changed_copy(
    sim: SimHelper, exported: Path, tmp_path: Path
) -> None:
    sim.from_log(exported, APP).run_seeds(range(20)).raise_on_failure()
    failing = sim.from_log(exported, changed_app(tmp_path)).run_seeds(range(3))
    assert not failing.ok
    with pytest.raises(AssertionError, match=r"(?s)counts.*seq 8"):
        failing.raise_on_failure()


def test_a_log_without_the_outside_stream_is_refused_naming_it_and_the_export_to_run(
    production: str, tmp_path: Path
) -> None:
    # A glob that leaves the input out, as an export by an older perper did.
    partial = export(production, tmp_path / "partial.sqlite", "--streams", "r/*")
    code, out = invoke(str(APP), "--log", str(partial), "--seeds", "0..1")
    assert code == 2, out
    assert f"reads the stream '{CLICKS}' from outside the run" in out, out
    assert "r/counts-0, r/live-1" in out
    assert "perper export SRC_URL partial.sqlite --run r" in out


def test_a_run_that_had_not_finished_is_refused_naming_what_ran_and_pointing_at_replay(
    tmp_path: Path,
) -> None:
    from perper.runtime import Runtime

    log = tmp_path / "unfinished.db"
    url = f"sqlite:///{log}"

    async def stopped_mid_run() -> None:
        await send(url, 0, BEFORE, stream=CLICKS)  # never sealed
        async with perper.open_store(url) as store:
            runtime = Runtime(store, load_app(APP))
            await runtime.prepare_run("r", {"clicks": perper.StreamRef(CLICKS)})
            stop = asyncio.Event()
            worker = asyncio.ensure_future(runtime.work(run="r", stop=stop))
            deadline = time.monotonic() + 60
            while await store.head("r/counts-0") < BEFORE:
                assert time.monotonic() < deadline and not worker.done()
                await asyncio.sleep(0.02)
            stop.set()
            await worker

    asyncio.run(stopped_mid_run())
    code, out = invoke(str(APP), "--log", str(log), "--seeds", "0..1")
    assert code == 2, out
    assert "run 'r' in" in out and "had not finished when it was recorded" in out, out
    assert "r/counts-0, r/live-1 still running; never sealed: shop/clicks" in out
    assert "perper replay unfinished.db APP.py" in out
    replayed = perper_cli("replay", str(log), str(APP))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_replay_graph_of_the_exported_log_copies_the_outside_stream_in(exported: Path) -> None:
    done = perper_cli("replay", str(exported), str(APP), "--graph")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every stream reproduces the log" in done.stdout + done.stderr
    per_execution = perper_cli("replay", str(exported), str(APP))
    assert per_execution.returncode == 0, per_execution.stdout + per_execution.stderr


QUERY_APP = APPS / "outside_query.py"


@pytest.fixture(scope="module")
def query_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outside_query.py recorded and exported: the producer indexes the
    stream, the run queries it while the producer goes on."""
    url = f"sqlite:///{tmp_path_factory.mktemp('query') / 'prod.db'}"
    record(url, QUERY_APP, first="r/tallies-0", index=True)
    return export(url, tmp_path_factory.mktemp("query-exported") / "rec.sqlite")


def test_queries_of_an_indexed_outside_stream_see_what_they_saw_in_production(
    query_log: Path,
) -> None:
    recorded = load_recorded(query_log, load_app(QUERY_APP))
    tallies = recorded.reference.items["r/tallies-0"]
    # The recording is meaningful: early queries saw only part of the stream.
    of_user_0 = len([i for i in range(TOTAL) if click(i)["user"] == 0])
    assert tallies[0]["user"] == 0 and tallies[0]["clicks"] < of_user_0, tallies
    assert tallies[-1]["clicks"] == len([i for i in range(TOTAL) if i % 4 == click(29)["user"]])
    # Every query's recorded end was in place before the run; the index came along.
    feed = recorded.feeds[CLICKS]
    assert feed.first == TOTAL and feed.batches == () and feed.index == (("user", "int"),)
    code, out = invoke(str(QUERY_APP), "--log", str(query_log), "--seeds", "0..39")
    assert code == 0, out
    assert "40 seeds run, 0 failures" in out


def test_queries_of_the_runs_own_ingest_stream_see_what_they_saw_in_production(
    tmp_path: Path,
) -> None:
    app = APPS / "ingest_query.py"
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    record(url, app, first="r/tallies-0", stream="r/clicks", index=True)
    recorded = load_recorded(tmp_path / "prod.db", load_app(app))
    assert recorded.inputs == {}
    assert recorded.feeds["r/clicks"].first == TOTAL
    assert recorded.reference.items["r/tallies-0"][0]["clicks"] < 8
    code, out = invoke(str(app), "--log", str(tmp_path / "prod.db"), "--seeds", "0..29")
    assert code == 0, out
    assert "30 seeds run, 0 failures" in out


@pytest.mark.ignite
def test_a_run_recorded_on_ignite_and_exported_passes_and_a_changed_copy_fails(
    tmp_path: Path,
) -> None:
    from tests.conftest import store_url

    if not os.environ.get("PERPER_TEST_IGNITE"):
        pytest.skip("needs PERPER_TEST_IGNITE=ignite://host:port (a running node)")
    url = store_url("ignite", tmp_path, "outside")
    record(url)
    log = export(url, tmp_path / "ignite.sqlite")
    assert 0 < live_start(log) < TOTAL
    code, out = invoke(str(APP), "--log", str(log), "--seeds", "0..29")
    assert code == 0, out
    assert f"input '{CLICKS}' from outside the run: {TOTAL} items" in out
    code, out = invoke(str(changed_app(tmp_path)), "--log", str(log), "--seeds", "0..2")
    assert code == 1 and "function: counts" in out and "seq 8" in out, out
