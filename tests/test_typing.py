"""A user's app passes `mypy --strict`: the decorators are typed (perper ships py.typed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USER_APP = """
from collections.abc import AsyncIterator

import perper

app = perper.App("typed")


@app.stream
async def numbers(ctx: perper.Context, count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


@app.stream(recovery="checkpoint", checkpoint_every=10)
async def total(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[int]:
    ctx.state.setdefault("sum", 0)
    async for number in ctx.read(source):
        ctx.state["sum"] += number
        yield ctx.state["sum"]


@app.action(name="sink")
async def sink(ctx: perper.Context, source: perper.StreamRef) -> None:
    async for number in ctx.read(source):
        ctx.log.info("%s", number)


@app.launcher
async def main(ctx: perper.Context, count: int = 10) -> None:
    ref: perper.StreamRef = await ctx.start(total, await ctx.start(numbers, count=count))
    await ctx.start(sink, ref)


registered: perper.StreamFunction = numbers
"""


def mypy_strict(*paths: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_the_examples_pass_mypy_strict(tmp_path: Path) -> None:
    result = mypy_strict(*sorted((ROOT / "examples").glob("*.py")), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_users_app_with_every_decorator_form_passes_mypy_strict(tmp_path: Path) -> None:
    app = tmp_path / "typed_app.py"
    app.write_text(USER_APP)
    result = mypy_strict(app, cache=tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
