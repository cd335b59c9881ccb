"""Replay of an execution that failed with an EncodeError reproduces the failure instead of
reporting a divergence: the runtime refused the whole batch holding the unencodable item,
so the encodable items before it are missing from the recording."""

from __future__ import annotations

from pathlib import Path

import pytest

from perper.app import load_app
from perper.replay import DIVERGED, IDENTICAL, replay
from tests.replay.conftest import record

APP = """
import perper

app = perper.App("enc")


@app.stream
async def gen(ctx: perper.Context, count: int):
    for i in range(count):
        yield {"value": i}
    yield {"bad": BAD}


@app.launcher
async def main(ctx: perper.Context, count: int = 5):
    await ctx.start(gen, count=count)
"""


def app_file(tmp_path: Path, bad: str) -> Path:
    path = tmp_path / f"enc_{abs(hash(bad))}.py"
    path.write_text(APP.replace("BAD", bad))
    return path


@pytest.mark.parametrize("batch_size", [1, 100])
def test_an_execution_that_failed_encoding_replays_identically(
    tmp_path: Path, batch_size: int
) -> None:
    app = load_app(app_file(tmp_path, "object()"))
    log = record(tmp_path / "log.db", app, batch_size=batch_size, expect_failure=True)
    results = replay(log, app)
    result = results["r/gen-0"]
    assert result.outcome == IDENTICAL, str(results)
    assert any("reproduced the recorded failure" in note for note in result.notes)
    assert results.exit_code == 0


def test_code_that_no_longer_fails_encoding_diverges_from_the_failed_recording(
    tmp_path: Path,
) -> None:
    failing = load_app(app_file(tmp_path, "object()"))
    log = record(tmp_path / "log.db", failing, expect_failure=True)
    fixed = load_app(app_file(tmp_path, "'fine'"))
    results = replay(log, fixed)
    result = results["r/gen-0"]
    assert result.outcome == DIVERGED
    assert result.divergence is not None
    assert "finished without error" in str(result.divergence.actual)
