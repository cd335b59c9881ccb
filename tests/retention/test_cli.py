"""The command line over a run with trimmed streams: listed, never silently half-copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import perper

APP = str(Path(__file__).resolve().parents[1] / "simulator" / "apps" / "ephemeral.py")


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ephemeral")
    done = perper("run", APP, "--store", "sqlite:///log.db", "--run", "r", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def test_streams_ls_shows_the_first_stored_seq_of_trimmed_streams(ran: Path) -> None:
    listed = perper("streams", "ls", "--store", "sqlite:///log.db", "--json", cwd=ran)
    assert listed.returncode == 0, listed.stderr
    firsts = {row["name"]: row["first"] for row in json.loads(listed.stdout)}
    assert firsts == {
        "r/numbers-0": 40,
        "r/doubled-1": 40,
        "r/total-2": 0,
        "r/tripled-3": 40,
        "r/total-4": 0,
    }


def test_export_of_a_trimmed_run_exits_2_naming_the_stream_and_writes_nothing(ran: Path) -> None:
    exported = perper("export", "sqlite:///log.db", "out.db", "--run", "r", cwd=ran)
    assert exported.returncode == 2
    assert "was trimmed" in exported.stderr and "'r/doubled-1'" in exported.stderr
    assert not (ran / "out.db").exists()


def test_export_of_the_kept_streams_alone_works(ran: Path) -> None:
    exported = perper(
        "export", "sqlite:///log.db", "kept.db", "--run", "r", "--streams", "r/total-*", cwd=ran
    )
    assert exported.returncode == 0, exported.stderr


def test_replay_of_a_trimmed_run_exits_2_naming_the_stream(ran: Path) -> None:
    replayed = perper("replay", "log.db", APP, cwd=ran)
    assert replayed.returncode == 2
    assert "was trimmed" in replayed.stderr and "r/numbers-0" in replayed.stderr


def test_cat_of_a_trimmed_position_exits_2_and_says_where_the_stream_starts(ran: Path) -> None:
    cat = perper("streams", "cat", "r/numbers-0", "--store", "sqlite:///log.db", cwd=ran)
    assert cat.returncode == 2
    assert "first stored seq is 40" in cat.stderr


INDEXED = str(Path(__file__).resolve().parents[1] / "simulator" / "apps" / "indexed_ephemeral.py")


def test_streams_rm_of_an_indexed_stream_deletes_it_and_perper_query_says_it_is_gone(
    tmp_path: Path,
) -> None:
    done = perper("run", INDEXED, "--store", "sqlite:///log.db", "--run", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    store = ["--store", "sqlite:///log.db"]
    # Trimmed whole (its readers are done): the query answers nothing, and says so plainly.
    queried = perper("query", "r/orders-0", "user = ?", "--param", "1", *store, cwd=tmp_path)
    assert queried.returncode == 0, queried.stderr
    assert queried.stdout == ""
    removed = perper("streams", "rm", "r/orders-0", *store, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    queried = perper("query", "r/orders-0", "user = ?", "--param", "1", *store, cwd=tmp_path)
    assert queried.returncode == 2
    assert "no stream 'r/orders-0'" in queried.stderr
    listed = perper("streams", "ls", *store, "--json", cwd=tmp_path)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert (rows["r/orders-0"]["items"], rows["r/orders-0"]["index"]) == (0, None)
