"""The pytest plugin: drop logs in a folder, get one test per recorded execution."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.replay.conftest import BASIC, EFFECTS, FIXTURES


def pytest_run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # An empty ini of its own, so the run does not pick up this project's pytest settings.
    (cwd / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "perper.testing.plugin",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-rf",
            *map(str, args),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def drop_logs(folder: Path, *names: str) -> None:
    folder.mkdir()
    for name in names:
        shutil.copy(FIXTURES / name, folder / name)


def test_every_execution_of_every_log_in_the_folder_is_a_test(tmp_path: Path) -> None:
    drop_logs(tmp_path / "logs", "basic-clean.db", "basic-old-processor.db", "effects.db")
    done = pytest_run(
        "--perper-replay-dir",
        "logs",
        "--perper-replay-app",
        BASIC,
        "--perper-replay-app",
        EFFECTS,
        "-v",
        cwd=tmp_path,
    )
    assert "1 failed, 11 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1
    assert "logs/basic-clean.db::clean/processor-1 PASSED" in done.stdout
    assert "logs/effects.db::effects/sampler-1 PASSED" in done.stdout
    assert "logs/basic-old-processor.db::old-processor/processor-1 FAILED" in done.stdout
    # The failure reads like the replay's report, not like a traceback of the plugin.
    assert "expected:  [0, 1]" in done.stdout
    assert "actual:    [0, 1, 2]" in done.stdout


def test_a_log_of_an_app_that_was_not_given_fails_saying_which_app_it_needs(
    tmp_path: Path,
) -> None:
    drop_logs(tmp_path / "logs", "effects.db")
    done = pytest_run("--perper-replay-dir", "logs", "--perper-replay-app", BASIC, cwd=tmp_path)
    assert done.returncode == 1
    assert "4 failed" in done.stdout
    assert "recorded by app 'effects'; the apps given are 'basic'" in done.stdout


def test_the_folder_and_apps_can_come_from_the_ini_and_run_in_parallel(tmp_path: Path) -> None:
    drop_logs(tmp_path / "logs", "basic-clean.db")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_other.py").write_text("def test_other():\n    pass\n")
    ini = (
        "[pytest]\nasyncio_default_fixture_loop_scope = function\ntestpaths = tests\n"
        f"perper_replay_dirs = logs\nperper_replay_apps = {BASIC}\n"
    )
    (tmp_path / "pytest.ini").write_text(ini)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "perper.testing.plugin",
            "-p",
            "no:cacheprovider",
            "-n",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout  # the 4 executions, and the testpaths still collected


def test_without_the_option_the_plugin_collects_nothing(tmp_path: Path) -> None:
    drop_logs(tmp_path / "logs", "basic-clean.db")
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    done = pytest_run(cwd=tmp_path)
    assert done.returncode == 0
    assert "1 passed" in done.stdout
