"""``python -m simulator run``: the summary, failures with a reproducing command, shrinking."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perper.app import load_app
from simulator import Simulation
from simulator.cli import main

from .conftest import APPS, EXAMPLES, ROOT


def invoke(*args: str, cwd: Path | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def test_a_passing_range_prints_the_summary_and_exits_0() -> None:
    code, out = invoke(str(EXAMPLES / "basic.py"), "--seeds", "0..19")
    assert code == 0, out
    assert re.search(
        r"20 seeds run, 0 failures; [\d,]+ steps in .* steps/s, .* seeds/s\); "
        r"simulated .* \([\d,.]+x real time\)",
        out,
    ), out
    assert "ok: every output equals the fault-free run" in out


def test_a_failure_prints_seed_parameters_schedule_violation_and_command(tmp_path: Path) -> None:
    saved = tmp_path / "failure.db"
    code, out = invoke(
        str(EXAMPLES / "running_total.py"), "--seeds", "0..199", "--save", str(saved)
    )
    assert code == 1
    assert "derived parameters:" in out and "workers:" in out and "lease_ttl:" in out
    assert "fault schedule:" in out and "first violation:" in out
    assert "sim/running_total-1" in out
    command = re.search(r"^reproduce: (python -m simulator run .*)$", out, re.MULTILINE)
    assert command is not None
    assert saved.exists()
    # the one-line command fails the same way
    argv = shlex.split(command.group(1))[4:]
    code_again, again = invoke(*argv, "--save", str(tmp_path / "again.db"))
    assert code_again == 1
    first = re.search(r"first violation:\n\s+(.*)", out)
    second = re.search(r"first violation:\n\s+(.*)", again)
    assert first is not None and second is not None and first.group(1) == second.group(1)


def test_shrink_prints_a_schedule_of_at_most_two_faults(tmp_path: Path) -> None:
    code, out = invoke(
        str(EXAMPLES / "running_total.py"),
        "--seeds",
        "0..199",
        "--shrink",
        "--save",
        str(tmp_path / "f.db"),
    )
    assert code == 1
    found = re.search(r"shrunk (\d+) faults to (\d+) in \d+ runs:", out)
    assert found is not None and 1 <= int(found.group(2)) <= 2, out
    assert "reproduce the shrunk failure: python -m simulator run" in out and "--schedule" in out


def test_sweep_crashes_every_step_and_passes_a_correct_app() -> None:
    code, out = invoke(str(APPS / "checkpointed.py"), "--sweep", "--param", "count=6")
    assert code == 0, out
    assert re.search(r"sweep: crashed the run at each of its \d+ scheduling steps", out)


def test_jobs_spread_seeds_over_processes_with_the_same_outcome() -> None:
    code, out = invoke(str(EXAMPLES / "basic.py"), "--seeds", "0..29", "--jobs", "2", "--trace")
    code1, out1 = invoke(str(EXAMPLES / "basic.py"), "--seeds", "0..29", "--trace")
    assert code == code1 == 0
    hashes = [line for line in out.splitlines() if "trace hash" in line]
    assert hashes == [line for line in out1.splitlines() if "trace hash" in line]
    assert len(hashes) == 30


def test_jobs_report_the_same_failures_as_one_process() -> None:
    args = (str(EXAMPLES / "running_total.py"), "--seeds", "0..59")
    code, out = invoke(*args, "--jobs", "2")
    code1, out1 = invoke(*args)
    assert code == code1 == 1
    summary = re.compile(r"60 seeds run, (\d+) failures")
    found, found1 = summary.search(out), summary.search(out1)
    assert found and found1 and found.group(1) == found1.group(1) != "0", out
    assert "reproduce: python -m simulator run" in out


def test_a_job_that_dies_is_reported_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from simulator import campaign

    def die(*args: object) -> None:
        os._exit(3)

    monkeypatch.setattr(campaign, "_outcome", die)
    simulation = Simulation(load_app(EXAMPLES / "basic.py"), {"count": 5})
    with pytest.raises(RuntimeError, match="exited with status 3"):
        simulation.run_seeds(range(4), jobs=2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "meteor"], "unknown fault kind 'meteor'"),
        (["--seeds", "9..3"], "the range is empty"),
        (["--param", "nope=1"], "has no parameter 'nope'"),
        (["--schedule", "crash:x"], "cannot read fault"),
    ],
)
def test_bad_options_say_what_to_write_instead(args: list[str], message: str) -> None:
    code, out = invoke(str(EXAMPLES / "basic.py"), *args)
    assert code == 2 and message in out


@pytest.mark.slow
def test_python_dash_m_simulator_runs_the_done_when_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "simulator", "run", "examples/basic.py", "--seeds", "0..199"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "200 seeds run, 0 failures" in out


def test_the_reproduce_line_quotes_a_json_param_so_a_shell_reads_it_back_intact() -> None:
    from simulator.campaign import reproduce_command
    from simulator.faults import Crash

    param = 'orders={"note": "it\'s $HOME; `rm` *", "ids": [1, 2]}'
    schedule = (Crash("crash", 0, 5, 0.25),)
    line = reproduce_command(
        "my apps/app.py", 3, kinds=("crash",), workers=2, params=[param], schedule=schedule
    )
    argv = shlex.split(line)
    assert argv[:5] == ["python", "-m", "simulator", "run", "my apps/app.py"]
    assert argv[argv.index("--param") + 1] == param
    from simulator.faults import format_schedule

    assert argv[argv.index("--schedule") + 1] == format_schedule(schedule)
