"""``perper replay`` run as a user runs it: in a subprocess, judged by exit code and output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.replay.conftest import (
    BASIC,
    CHANGED_PROCESSOR,
    EFFECTS,
    FIXTURES,
    NO_CONSUMER,
    RENAMED_PARAMETER,
    variant_file,
)


def perper(
    *args: str | Path, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def test_a_clean_log_exits_0_with_a_row_per_execution(basic_log: Path, tmp_path: Path) -> None:
    done = perper("replay", basic_log, BASIC, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for execution in ["clean/main", "clean/generator-0", "clean/processor-1", "clean/consumer-2"]:
        assert execution in done.stdout
    assert "4 identical, 0 diverged, 0 cannot be replayed" in done.stdout


def test_a_divergence_exits_1_and_shows_function_seq_expected_actual_and_inputs(
    basic_log: Path, tmp_path: Path
) -> None:
    changed = variant_file(tmp_path, "changed", CHANGED_PROCESSOR)
    done = perper("replay", basic_log, changed, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "clean/processor-1 diverged:" in out
    assert "function:  processor" in out
    assert "seq:       16" in out
    assert "expected:  [48, 49, 50]" in out
    assert "actual:    [48, 49, 100]" in out
    assert "item[2]: expected 50, got 100" in out
    assert "inputs consumed: clean/generator-0 at 51" in out


def test_a_missing_function_or_misfit_parameters_exit_2_with_the_reason(
    basic_log: Path, tmp_path: Path
) -> None:
    missing = perper("replay", basic_log, variant_file(tmp_path, "gone", NO_CONSUMER), cwd=tmp_path)
    assert missing.returncode == 2, missing.stdout
    assert "clean/consumer-2 cannot be replayed" in missing.stdout
    assert "has no function 'consumer'" in missing.stdout

    renamed = variant_file(tmp_path, "renamed", {**RENAMED_PARAMETER, "batch_size=3": "size=3"})
    misfit = perper("replay", basic_log, renamed, cwd=tmp_path)
    assert misfit.returncode == 2, misfit.stdout
    assert "no longer fit its signature" in misfit.stdout
    assert "missing a required argument: 'size'" in misfit.stdout


def test_a_log_that_cannot_be_opened_exits_2_with_the_reason(tmp_path: Path) -> None:
    done = perper("replay", tmp_path / "nope.db", BASIC, cwd=tmp_path)
    assert done.returncode == 2
    assert "error: cannot replay" in done.stderr
    assert "does not exist" in done.stderr
    bad_app = perper("replay", FIXTURES / "basic-clean.db", tmp_path / "nope.py", cwd=tmp_path)
    assert bad_app.returncode == 2
    assert "does not exist" in bad_app.stderr


def test_json_lists_every_execution_for_ci(basic_log: Path, tmp_path: Path) -> None:
    changed = variant_file(tmp_path, "changed", CHANGED_PROCESSOR)
    done = perper("replay", basic_log, changed, "--json", cwd=tmp_path)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["exit_code"] == 1
    assert data["ok"] is False
    by_id = {e["execution"]: e for e in data["executions"]}
    assert set(by_id) == {
        "clean/main",
        "clean/generator-0",
        "clean/processor-1",
        "clean/consumer-2",
    }
    divergence = by_id["clean/processor-1"]["divergence"]
    assert divergence["seq"] == 16
    assert divergence["function"] == "processor"
    assert divergence["expected"] == [48, 49, 50]
    assert divergence["actual"] == [48, 49, 100]
    assert divergence["input_positions"] == {"clean/generator-0": 51}
    assert by_id["clean/generator-0"]["outcome"] == "identical"


def test_function_and_until_stop_just_before_that_seq(basic_log: Path, tmp_path: Path) -> None:
    done = perper(
        "replay",
        basic_log,
        BASIC,
        "--function",
        "processor",
        "--until",
        "7",
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["executions"]
    assert result["outcome"] == "stopped"
    assert result["stopped_before"] == 7
    assert result["items_compared"] == 7
    assert result["items_read"] == 21


def test_pdb_opens_before_the_seq_with_locals_and_ctx_at_hand(
    basic_log: Path, tmp_path: Path
) -> None:
    commands = "p ctx.execution\np sorted(ctx.state)\np batch\nn\nn\np batch\nc\n"
    done = perper(
        "replay",
        basic_log,
        BASIC,
        "--function",
        "processor",
        "--until",
        "2",
        "--pdb",
        cwd=tmp_path,
        stdin=commands,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "is about to compute the item at seq 2" in out
    assert "'clean/processor-1'" in out  # ctx is in reach
    assert "['batch']" in out  # so is ctx.state
    assert "[3, 4, 5]" in out  # the function's locals: the batch just yielded, before clear()
    assert "stopped before 2" in out


def test_graph_reruns_the_whole_run_and_diffs_every_stream(basic_log: Path, tmp_path: Path) -> None:
    clean = perper("replay", basic_log, BASIC, "--graph", "--json", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    [run] = json.loads(clean.stdout)["runs"]
    assert run["outcome"] == "identical"
    assert {s["stream"]: s["items_compared"] for s in run["streams"]} == {
        "clean/generator-0": 1000,
        "clean/processor-1": 334,
        "clean/consumer-2": 0,
    }

    changed = variant_file(tmp_path, "changed", CHANGED_PROCESSOR)
    diverged = perper("replay", basic_log, changed, "--graph", cwd=tmp_path)
    assert diverged.returncode == 1
    assert "clean/processor-1 diverged" in diverged.stdout
    assert "expected:  [48, 49, 50]" in diverged.stdout


def test_an_effects_log_replays_with_its_recorded_effects(tmp_path: Path) -> None:
    log = Path(shutil.copy(FIXTURES / "effects.db", tmp_path / "effects.db"))
    done = perper("replay", log, EFFECTS, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "4 identical" in done.stdout


def test_options_that_do_not_go_together_exit_2(basic_log: Path, tmp_path: Path) -> None:
    done = perper("replay", basic_log, BASIC, "--graph", "--until", "3", cwd=tmp_path)
    assert done.returncode == 2
    assert "--graph replays whole runs" in done.stderr
    done = perper("replay", basic_log, BASIC, "--pdb", "--json", cwd=tmp_path)
    assert done.returncode == 2
    assert "use one of them" in done.stderr


def test_pdb_without_until_opens_before_the_first_divergent_item(
    basic_log: Path, tmp_path: Path
) -> None:
    changed = variant_file(tmp_path, "changed", CHANGED_PROCESSOR)
    done = perper(
        "replay",
        basic_log,
        changed,
        "--function",
        "processor",
        "--pdb",
        cwd=tmp_path,
        stdin="p batch\nc\n",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "about to compute the item at seq 16 (the first divergence)" in done.stdout
    assert "[45, 46, 47]" in done.stdout  # the batch just yielded as seq 15
    assert "actual:    [48, 49, 100]" in done.stdout
