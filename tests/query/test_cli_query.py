"""``perper query`` and the index column of ``perper streams ls``, run as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import perper
from perper.cli.query import parse_query_param


def perper_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd,
        # A wide terminal, so the table's cells are not cut short.
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def log(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'log.db'}"

    async def fill() -> None:
        async with perper.open_store(url) as store:
            index = {"user": int, "amount": float, "page": str}
            async with perper.Producer(store, "run/orders", index=index) as orders:
                await orders.send_many(
                    [{"user": i % 10, "amount": i / 2, "page": f"/p{i % 3}"} for i in range(100)]
                )
            await store.append("run/plain", 0, [1, 2])

    asyncio.run(fill())
    return url


def test_query_prints_the_matching_items_with_their_seq_as_json_lines(
    log: str, tmp_path: Path
) -> None:
    ran = perper_cli(
        "query", "run/orders", "user = ? AND amount > ?", "--param", "4", "--param", "20",
        "--store", log, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [line["seq"] for line in lines] == [44, 54, 64, 74, 84, 94]
    assert lines[0]["item"] == {"user": 4, "amount": 22.0, "page": "/p2"}


def test_query_limits_orders_and_prints_one_json_document(log: str, tmp_path: Path) -> None:
    ran = perper_cli(
        "query", "run/orders", "page = ?", "--param", "/p1", "--limit", "2",
        "--order-by", "amount DESC", "--json", "--store", log, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    document = json.loads(ran.stdout)
    assert [row["seq"] for row in document["rows"]] == [97, 94]
    assert document["params"] == ["/p1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run/orders", "customer = 1"], "the indexed fields are seq, user, amount, page"),
        (["run/plain", "1"], "'run/plain' in sqlite"),
        (["run/nothing", "1"], "no stream 'run/nothing'"),
        (["run/orders", "user = 1; DROP TABLE segments"], "a second statement"),
    ],
)
def test_a_bad_query_exits_2_saying_what_is_wrong(
    log: str, tmp_path: Path, args: list[str], message: str
) -> None:
    ran = perper_cli("query", *args, "--store", log, cwd=tmp_path)
    assert ran.returncode == 2
    assert message in ran.stderr


def test_streams_ls_marks_indexed_streams(log: str, tmp_path: Path) -> None:
    listed = perper_cli("streams", "ls", "--json", "--store", log, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row["index"] for row in json.loads(listed.stdout)}
    assert rows == {
        "run/orders": {"user": "int", "amount": "float", "page": "str"},
        "run/plain": None,
    }
    table = perper_cli("streams", "ls", "--store", log, cwd=tmp_path)
    assert "user int, amount float, page str" in table.stdout


def test_params_are_json_when_they_parse_and_strings_otherwise() -> None:
    assert [parse_query_param(t) for t in ["4242", "2.5", "true", "null", '"7"', "/home"]] == [
        4242, 2.5, True, None, "7", "/home",
    ]  # fmt: skip
