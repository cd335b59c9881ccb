"""The event loop perper's commands run on: uvloop when installed, ``$PERPER_LOOP`` to choose."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perper.cli.common import event_loop_factory
from perper.errors import ConfigError

#: A launcher that says which loop runs it (the loop's class and its module).
LOOP_APP = (
    "import asyncio, sys\n"
    "import perper\n"
    "app = perper.App('loops')\n"
    "@app.launcher\n"
    "async def main(ctx):\n"
    "    loop = type(asyncio.get_running_loop())\n"
    "    print(f'loop={loop.__module__}.{loop.__qualname__}', file=sys.stderr)\n"
)


def perper(*args: str, cwd: Path, loop: str | None) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != "PERPER_LOOP"}
    if loop is not None:
        env["PERPER_LOOP"] = loop
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def loop_of_a_run(tmp_path: Path, loop: str | None) -> str:
    (tmp_path / "loops.py").write_text(LOOP_APP)
    ran = perper("run", "loops.py", "--store", "sqlite:///t.db", "-q", cwd=tmp_path, loop=loop)
    assert ran.returncode == 0, ran.stderr
    return next(line for line in ran.stderr.splitlines() if line.startswith("loop="))


@pytest.mark.parametrize("loop", [None, "", "auto", "uvloop", " UVLoop "])
def test_perper_run_runs_on_uvloop_when_it_is_installed(tmp_path: Path, loop: str | None) -> None:
    pytest.importorskip("uvloop")
    assert loop_of_a_run(tmp_path, loop) == "loop=uvloop.Loop"


def test_perper_loop_asyncio_runs_the_command_on_asyncios_own_loop(tmp_path: Path) -> None:
    assert loop_of_a_run(tmp_path, "asyncio") == "loop=asyncio.unix_events._UnixSelectorEventLoop"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "loops.py", "--store", "sqlite:///t.db"],
        ["streams", "ls", "--store", "sqlite:///t.db"],
        ["export", "sqlite:///t.db", "sqlite:///copy.db"],
    ],
)
def test_a_perper_loop_of_another_name_exits_2_naming_it_and_the_choices(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "loops.py").write_text(LOOP_APP)
    made = perper("run", "loops.py", "--store", "sqlite:///t.db", cwd=tmp_path, loop=None)
    assert made.returncode == 0, made.stderr
    ran = perper(*args, cwd=tmp_path, loop="trio")
    assert ran.returncode == 2, ran.stderr
    assert "PERPER_LOOP='trio' is not an event loop perper knows" in ran.stderr
    assert "uvloop, asyncio" in ran.stderr
    assert "loop=" not in ran.stderr  # nothing ran


def test_without_uvloop_auto_is_asyncio_and_asking_for_uvloop_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop_factory(None) is asyncio.new_event_loop
    assert event_loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(ConfigError, match=r"pip install 'perper\[fast\]'.*PERPER_LOOP=asyncio"):
        event_loop_factory("uvloop")
