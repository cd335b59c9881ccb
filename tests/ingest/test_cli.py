"""``perper ingest``: JSON lines in, each once, resumable after a kill; bad lines."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from perper.cli import main
from perper.store import open_store

PERPER = Path(sys.executable).with_name("perper")


def write_lines(path: Path, count: int, *, bad_at: int | None = None) -> Path:
    with path.open("w") as f:
        for i in range(count):
            f.write(
                "{not json\n" if i + 1 == bad_at else json.dumps({"n": i, "id": f"e{i}"}) + "\n"
            )
    return path


def stored(url: str, stream: str = "r/clicks") -> list[Any]:
    async def read() -> list[Any]:
        async with open_store(url) as store:
            return [item async for _, item in store.read(stream)]

    return asyncio.run(read())


def test_ingest_sends_every_line_and_seals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    events = write_lines(tmp_path / "events.jsonl", 2500)
    result = CliRunner().invoke(main, ["ingest", "r/clicks", str(events), "--store", url, "--seal"])
    assert result.exit_code == 0, result.output
    assert "2,500 items sent from 2,500 lines" in result.output
    assert stored(url) == [{"n": i, "id": f"e{i}"} for i in range(2500)]


def test_ingest_killed_midway_and_run_again_stores_every_line_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    events = write_lines(tmp_path / "events.jsonl", 200_000)
    command = [str(PERPER), "ingest", "r/clicks", str(events), "--store", url, "--batch", "500"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def wait_for_some() -> int:
        async with open_store(url) as store, asyncio.timeout(60):
            while (head := await store.head("r/clicks")) < 20_000:
                await store.wait("r/clicks", 19_999, timeout=0.05)
            return head

    asyncio.run(wait_for_some())
    first.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert len(stored(url)) < 200_000  # really killed mid-way
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert stored(url) == [{"n": i, "id": f"e{i}"} for i in range(200_000)]


def test_a_bad_line_stops_with_its_number_and_nothing_after_it_is_sent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    events = write_lines(tmp_path / "events.jsonl", 10, bad_at=4)
    result = CliRunner().invoke(main, ["ingest", "r/clicks", str(events), "--store", url])
    assert result.exit_code == 2
    assert "line 4 is not a JSON item" in result.output and "--skip-bad" in result.output
    assert stored(url) == [{"n": i, "id": f"e{i}"} for i in range(3)]
    skipping = CliRunner().invoke(
        main, ["ingest", "r/clicks", str(events), "--store", url, "--skip-bad"]
    )
    assert skipping.exit_code == 0, skipping.output
    assert "skipped" in skipping.output and "line 4" in skipping.output
    assert stored(url) == [{"n": i, "id": f"e{i}"} for i in range(10) if i != 3]


def test_keys_from_a_field_make_a_different_file_with_the_same_events_append_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    one = write_lines(tmp_path / "one.jsonl", 50)
    two = write_lines(tmp_path / "two.jsonl", 80)
    for events in (one, two):
        result = CliRunner().invoke(
            main, ["ingest", "r/clicks", str(events), "--store", url, "--key", "id"]
        )
        assert result.exit_code == 0, result.output
    assert stored(url) == [{"n": i, "id": f"e{i}"} for i in range(80)]


def test_stdin_lines_are_read_and_a_bad_stream_name_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    result = CliRunner().invoke(
        main,
        ["ingest", "r/clicks", "-", "--store", url, "--source", "feed"],
        input='{"a": 1}\n\n[2]\n',
    )
    assert result.exit_code == 0, result.output
    assert stored(url) == [{"a": 1}, [2]]
    refused = CliRunner().invoke(main, ["ingest", "clicks", "-", "--store", url], input="1\n")
    assert refused.exit_code == 2 and "RUN/NAME" in refused.output
