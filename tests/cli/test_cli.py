"""The perper command, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

BASIC = str(EXAMPLES / "basic.py")


def perper(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_run_prints_every_batch_and_ls_lists_the_streams(tmp_path: Path) -> None:
    ran = perper("run", BASIC, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    for batch in ["[0, 1, 2]", "[3, 4, 5]", "[6, 7, 8]", "[9]"]:
        assert f"consumer received {batch}" in ran.stderr
    assert (tmp_path / ".perper" / "perper.db").exists()  # the default store
    listed = perper("streams", "ls", "--json", cwd=tmp_path)
    rows = json.loads(listed.stdout)
    assert [(r["function"], r["items"], r["status"]) for r in rows] == [
        ("generator", 10, "done"),
        ("processor", 4, "done"),
        ("consumer", 0, "done"),
    ]
    assert set(rows[0]) == {"name", "function", "items", "first", "status", "index"}
    table = perper("streams", "ls", cwd=tmp_path)
    assert "generator" in table.stdout and "processor" in table.stdout


def test_a_named_run_is_catted_in_order_and_rerunning_it_duplicates_nothing(tmp_path: Path) -> None:
    args = [
        "run",
        BASIC,
        "--store",
        "sqlite:///t.db",
        "--run",
        "r1",
        "--param",
        "count=20000",
        "-q",
    ]
    first = perper(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cat = perper("streams", "cat", "r1/generator-0", "--store", "sqlite:///t.db", cwd=tmp_path)
    lines = cat.stdout.splitlines()
    assert len(lines) == 20000
    assert [json.loads(line)["value"] for line in lines] == list(range(20000))
    again = perper(*args, cwd=tmp_path)
    assert again.returncode == 0 and "already done" in again.stderr
    db = sqlite3.connect(tmp_path / "t.db")
    heads = dict(db.execute("SELECT name, head FROM streams WHERE name NOT LIKE '%#%'"))
    assert heads == {"r1/generator-0": 20000, "r1/processor-1": 6667, "r1/consumer-2": 0}


def test_cat_honours_start_and_limit(tmp_path: Path) -> None:
    perper("run", BASIC, "--store", "sqlite:///t.db", "--run", "r", "-q", cwd=tmp_path)
    cat = perper(
        "streams",
        "cat",
        "r/generator-0",
        "--store",
        "sqlite:///t.db",
        "--start",
        "3",
        "--limit",
        "2",
        cwd=tmp_path,
    )
    assert cat.stdout.splitlines() == ['{"value": 3}', '{"value": 4}']


def test_a_run_without_a_name_prints_the_name_it_made(tmp_path: Path) -> None:
    ran = perper("run", BASIC, "--store", "sqlite:///t.db", "-q", cwd=tmp_path)
    assert ran.returncode == 0
    assert "run basic-" in ran.stderr


def test_a_failing_function_makes_run_exit_1_with_the_traceback(tmp_path: Path) -> None:
    app = tmp_path / "failing.py"
    app.write_text(
        "import perper\n"
        "app = perper.App('failing')\n"
        "@app.stream\n"
        "async def gen(ctx):\n"
        "    yield 1\n"
        "    raise ValueError('broken generator')\n"
        "@app.launcher\n"
        "async def main(ctx):\n"
        "    await ctx.start(gen)\n"
    )
    ran = perper("run", str(app), "--store", "sqlite:///t.db", "--run", "x", cwd=tmp_path)
    assert ran.returncode == 1
    assert "ValueError: broken generator" in ran.stderr and "x/gen-0" in ran.stderr
    cat = perper("streams", "cat", "x/gen-0", "--store", "sqlite:///t.db", cwd=tmp_path)
    assert cat.stdout == "1\n"  # what was written before the failure stays


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.py"], "app file 'missing.py' does not exist"),
        (["run", BASIC, "--param", "count=abc"], "count must be an integer"),
        (["run", BASIC, "--param", "cuont=3"], "has no parameter 'cuont' (it takes: count)"),
        (["run", BASIC, "--param", "count"], "must look like key=value"),
        (["run", BASIC, "--store", "nosuch://x"], "unknown store URL 'nosuch://x'"),
        (["run", BASIC, "--run", "a b"], "run name 'a b' is not valid"),
        (["streams", "cat", "nope", "--store", "sqlite:///t.db"], "there is no file t.db"),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_the_fix(
    tmp_path: Path, args: list[str], message: str
) -> None:
    ran = perper(*args, cwd=tmp_path)
    assert ran.returncode == 2
    assert message in ran.stderr


def test_cat_of_a_stream_the_log_lacks_exits_2_naming_it(tmp_path: Path) -> None:
    assert perper("run", BASIC, "--store", "sqlite:///t.db", "-q", cwd=tmp_path).returncode == 0
    ran = perper("streams", "cat", "nope", "--store", "sqlite:///t.db", cwd=tmp_path)
    assert ran.returncode == 2
    assert "no stream 'nope'" in ran.stderr


def test_a_corrupt_store_file_exits_2_and_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"garbage" * 1000)
    ran = perper("streams", "ls", "--store", "sqlite:///bad.db", cwd=tmp_path)
    assert ran.returncode == 2 and "not a SQLite database" in ran.stderr
    assert (tmp_path / "bad.db").read_bytes() == b"garbage" * 1000


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "perper"
    ran = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "streams" in ran.stdout and "run" in ran.stdout


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_the_version_flag_prints_the_version(tmp_path: Path, flag: str) -> None:
    import perper as library

    ran = perper(flag, cwd=tmp_path)
    assert ran.returncode == 0
    assert library.__version__ in ran.stdout
