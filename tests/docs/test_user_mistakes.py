"""A new user's likely mistakes get an error that names the value and the fix, not a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import perper
from perper.runtime import Runtime
from tests.conftest import EXAMPLES
from tests.docs.test_samples import perper_cli

BASIC = str(EXAMPLES / "basic.py")


def test_workers_on_a_memory_store_are_refused_instead_of_waiting_forever(tmp_path: Path) -> None:
    ran = perper_cli(
        "run", BASIC, "--workers", "2", "--store", "memory://", cwd=tmp_path, timeout=30
    )
    assert ran.returncode == 2
    assert "--workers 2" in ran.stderr and "'memory://'" in ran.stderr
    assert "sqlite:///PATH.db" in ran.stderr and "drop --workers" in ran.stderr


def test_a_worker_on_a_memory_store_is_refused(tmp_path: Path) -> None:
    ran = perper_cli("worker", BASIC, "--store", "memory://", cwd=tmp_path, timeout=30)
    assert ran.returncode == 2
    assert "'memory://'" in ran.stderr and "sqlite:///PATH.db" in ran.stderr


def test_a_call_nobody_serves_times_out_saying_a_worker_runs_it(tmp_path: Path) -> None:
    calls = str(EXAMPLES / "agents" / "calls.py")
    assert perper_cli("run", calls, "--run", "c1", "-q", cwd=tmp_path).returncode == 0
    ran = perper_cli(
        "call", "c1", "random_number", "--param", "low=1", "--param", "high=6",
        "--timeout", "0.5", cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert ran.returncode == 1
    assert "within 0.5 s" in ran.stderr
    assert "'perper worker APP.py' serving the app of run 'c1'" in ran.stderr


async def run_failing(app: perper.App) -> str:
    """Run ``app`` on a memory store; return the message of its failed execution."""
    store = perper.open_store("memory://")
    try:
        result = await asyncio.wait_for(Runtime(store, app).run("r"), 30)
    finally:
        await store.close()
    assert not result.ok
    return str(result).strip().splitlines()[-1]


async def test_starting_another_apps_function_names_it_and_its_app_briefly() -> None:
    other, app = perper.App("other"), perper.App("mine")

    @other.stream
    async def numbers(ctx: perper.Context) -> AsyncIterator[int]:
        yield 1

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(numbers)

    message = await run_failing(app)
    assert "'main' started <@app.stream numbers of app 'other'>" in message
    assert "@app.stream or @app.action of app 'mine'" in message
    assert "fn=<function" not in message  # not the whole dataclass


@pytest.mark.filterwarnings("ignore:coroutine 'Context.start' was never awaited")
async def test_a_forgotten_await_on_ctx_start_is_named() -> None:
    app = perper.App("forgetful")

    @app.stream
    async def numbers(ctx: perper.Context) -> AsyncIterator[int]:
        yield 1

    @app.stream
    async def copy(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
        async for x in ctx.read(source):
            yield x

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        source = ctx.start(numbers)  # the await left out
        await ctx.start(copy, source)

    message = await run_failing(app)
    assert "cannot start 'copy': cannot encode coroutine at parameters['source']" in message
    assert "is an 'await' missing, as in 'await ctx.start(...)'?" in message


def test_a_file_path_where_a_store_url_belongs_is_answered_with_the_url(tmp_path: Path) -> None:
    assert perper_cli("run", BASIC, "--store", "sqlite:///run.sqlite", cwd=tmp_path).returncode == 0
    exported = perper_cli("export", "run.sqlite", "copy.sqlite", cwd=tmp_path)
    assert exported.returncode == 2
    assert "SRC_URL 'run.sqlite' is not a store URL" in exported.stderr
    assert "write sqlite:///run.sqlite" in exported.stderr
    listed = perper_cli("streams", "ls", "--store", str(tmp_path / "run.sqlite"), cwd=tmp_path)
    assert listed.returncode == 2
    assert f"write sqlite:///{tmp_path}/run.sqlite" in listed.stderr  # sqlite://// + the path
    assert not (tmp_path / "copy.sqlite").exists()
