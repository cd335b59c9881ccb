"""A recorded run as the workload: ``python -m simulator run APP.py --log REC.sqlite`` and
``sim.from_log``. The reference is what production wrote, effects included."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from perper.errors import ConfigError
from simulator.cli import main
from simulator.testing import SimHelper

from .conftest import EXAMPLES, ROOT


def record(app: Path, log: Path, *params: str) -> Path:
    """Run ``app`` for real with ``perper run`` into the SQLite log ``log``."""
    argv = [sys.executable, "-m", "perper.cli", "run", str(app), "--store", f"sqlite:///{log}"]
    for param in params:
        argv += ["--param", param]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return log


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args])
    return result.exit_code, result.output


def changed_basic(tmp_path: Path) -> Path:
    source = (EXAMPLES / "basic.py").read_text()
    changed = source.replace(
        "            yield list(batch)\n",
        "            yield list(batch) if batch[0] != 9 else [9, 10, 100]\n",
        1,
    )
    assert changed != source
    path = tmp_path / "changed_basic.py"
    path.write_text(changed)
    return path


@pytest.fixture(scope="module")
def effects_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(EXAMPLES / "effects.py", tmp_path_factory.mktemp("effects") / "effects.db")


@pytest.fixture(scope="module")
def basic_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(EXAMPLES / "basic.py", tmp_path_factory.mktemp("basic") / "b.db", "count=40")


def test_outputs_that_use_ctx_now_match_the_recorded_run_under_faults(effects_log: Path) -> None:
    code, out = invoke(str(EXAMPLES / "effects.py"), "--log", str(effects_log), "--seeds", "0..39")
    assert code == 0, out
    assert re.search(r"recorded run 'effects-\w+' from .*: 3 streams, \d+ items, \d+ recorded", out)
    assert "40 seeds run, 0 failures" in out
    assert "ok: every output equals the recorded run's" in out


def test_a_changed_function_fails_naming_it_and_the_seq_and_the_reproduce_line_fails_again(
    basic_log: Path, tmp_path: Path
) -> None:
    changed = changed_basic(tmp_path)
    code, out = invoke(
        str(changed), "--log", str(basic_log), "--seeds", "0..9", "--shrink",
        "--save", str(tmp_path / "f.db"),
    )  # fmt: skip
    assert code == 1, out
    assert "holds another item at seq 3 than the recorded run" in out
    assert "function: processor" in out
    assert "expected: [9, 10, 11]" in out and "actual:   [9, 10, 100]" in out
    found = re.search(r"shrunk (\d+) faults to (\d+) in \d+ runs", out)
    assert found is not None and int(found.group(2)) <= 1, out
    command = re.search(r"^reproduce: (python -m simulator run .*)$", out, re.MULTILINE)
    assert command is not None and "--log" in command.group(1)
    again_code, again = invoke(*shlex.split(command.group(1))[4:], "--save", str(tmp_path / "a.db"))
    assert again_code == 1 and "holds another item at seq 3" in again


def test_the_unchanged_app_passes_on_its_own_recorded_log(basic_log: Path) -> None:
    code, out = invoke(str(EXAMPLES / "basic.py"), "--log", str(basic_log), "--seeds", "0..19")
    assert code == 0, out


def test_a_log_of_another_app_or_a_missing_run_is_refused_with_the_fix(
    basic_log: Path, tmp_path: Path
) -> None:
    code, out = invoke(str(EXAMPLES / "effects.py"), "--log", str(basic_log))
    assert code == 2 and "holds 0 runs of app 'effects'" in out and "--run NAME" in out
    code, out = invoke(str(EXAMPLES / "basic.py"), "--log", str(basic_log), "--run", "nope")
    assert code == 2 and "--run 'nope': no such run" in out
    code, out = invoke(str(EXAMPLES / "basic.py"), "--log", str(tmp_path / "none.db"))
    assert code == 2 and "no such file" in out
    code, out = invoke(str(EXAMPLES / "basic.py"), "--log", str(basic_log), "--param", "count=3")
    assert code == 2 and "drop --param with --log" in out


def test_sim_from_log_makes_a_recorded_run_a_test_under_faults(
    sim: SimHelper, effects_log: Path, basic_log: Path, tmp_path: Path
) -> None:
    assert sim.from_log(effects_log, EXAMPLES / "effects.py").run_seeds(range(10)).ok
    failing = sim.from_log(basic_log, changed_basic(tmp_path)).run_seeds(range(3))
    assert not failing.ok
    with pytest.raises(AssertionError, match="seq 3"):
        failing.raise_on_failure()
    with pytest.raises(ConfigError, match="no such run"):
        sim.from_log(basic_log, EXAMPLES / "basic.py", run="nope")


@pytest.mark.ignite
def test_a_run_recorded_on_ignite_and_exported_passes_and_a_changed_copy_fails(
    tmp_path: Path,
) -> None:
    import os

    from tests.conftest import store_url

    if not os.environ.get("PERPER_TEST_IGNITE"):
        pytest.skip("needs PERPER_TEST_IGNITE=ignite://host:port (a running node)")
    url = store_url("ignite", tmp_path, "recorded")
    argv = [sys.executable, "-m", "perper.cli"]
    ran = subprocess.run(
        [*argv, "run", str(EXAMPLES / "basic.py"), "--store", url, "--run", "prod",
         "--param", "count=40"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    log = tmp_path / "exported.sqlite"
    exported = subprocess.run(
        [*argv, "export", url, str(log), "--run", "prod"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stdout + exported.stderr
    code, out = invoke(str(EXAMPLES / "basic.py"), "--log", str(log), "--seeds", "0..49")
    assert code == 0, out
    code, out = invoke(str(changed_basic(tmp_path)), "--log", str(log), "--seeds", "0..4")
    assert code == 1 and "function: processor" in out and "seq 3" in out, out


@pytest.fixture(scope="module")
def clicks_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/clicks.py run for real, fed by examples/clicks_producer.py."""
    log = tmp_path_factory.mktemp("clicks") / "clicks.db"
    url = f"sqlite:///{log}"
    argv = [sys.executable, "-m", "perper.cli", "run", str(EXAMPLES / "clicks.py")]
    run = subprocess.Popen(
        [*argv, "--run", "shop", "--store", url, "--param", "every=50"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    producer = subprocess.run(
        [sys.executable, str(EXAMPLES / "clicks_producer.py"), "--store", url, "--run", "shop",
         "--count", "300", "--seal"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out, _ = run.communicate(timeout=120)
    assert producer.returncode == 0, producer.stdout + producer.stderr
    assert run.returncode == 0 and "run shop done" in out, out
    return log


def test_a_run_fed_by_a_producer_passes_with_its_ingest_replayed_by_simulated_producers(
    clicks_log: Path,
) -> None:
    code, out = invoke(str(EXAMPLES / "clicks.py"), "--log", str(clicks_log), "--seeds", "0..19")
    assert code == 0, out
    assert "recorded run 'shop'" in out and "20 seeds run, 0 failures" in out


def test_a_copy_whose_session_logic_changed_fails_naming_sessions_and_the_first_seq(
    clicks_log: Path, tmp_path: Path
) -> None:
    source = (EXAMPLES / "clicks.py").read_text()
    changed = source.replace("session[2] += 1", "session[2] += 2", 1)
    assert changed != source
    path = tmp_path / "clicks_changed.py"
    path.write_text(changed)
    code, out = invoke(
        str(path), "--log", str(clicks_log), "--seeds", "0..4", "--shrink",
        "--save", str(tmp_path / "f.db"),
    )  # fmt: skip
    assert code == 1, out
    assert "function: sessions" in out and "shop/sessions-0, seq" in out, out
    found = re.search(r"shrunk (\d+) faults to (\d+) in \d+ runs", out)
    assert found is not None and int(found.group(2)) <= 1, out


def record_outside_calls(log: Path) -> Path:
    """examples/agents/calls.py run for real, then three calls from outside the run
    (``perper.call``, the one that raises included) served by a worker."""
    import asyncio

    import perper
    from perper.app import load_app
    from perper.runtime import Runtime
    from perper.store.sqlite import SQLiteStore

    app = load_app(EXAMPLES / "agents" / "calls.py")

    async def main() -> None:
        async with SQLiteStore(log) as store:
            (await Runtime(store, app).run("c1", {})).raise_on_failure()
            stop = asyncio.Event()
            worker = asyncio.create_task(Runtime(store, app).work(stop=stop))
            await perper.call(store, "c1", "random_number", 1, 1000, key="first")
            await perper.call(store, "c1", "count_params", values=[1, 2, 3], key="second")
            with pytest.raises(perper.CallFailedError):
                await perper.call(store, "c1", "random_number", 1, key="bad")
            stop.set()
            await worker

    asyncio.run(main())
    return log


@pytest.fixture(scope="module")
def calls_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_outside_calls(tmp_path_factory.mktemp("calls") / "calls.db")


def test_calls_from_outside_the_run_are_made_again_in_their_recorded_order(
    calls_log: Path,
) -> None:
    from perper.app import load_app
    from simulator.recorded import load_recorded

    recorded = load_recorded(calls_log, load_app(EXAMPLES / "agents" / "calls.py"))
    assert [(c.key, c.function, c.args, dict(c.kwargs)) for c in recorded.calls] == [
        ("first", "random_number", (1, 1000), {}),
        ("second", "count_params", (), {"values": [1, 2, 3]}),
        ("bad", "random_number", (1,), {}),
    ]
    code, out = invoke(
        str(EXAMPLES / "agents" / "calls.py"), "--log", str(calls_log), "--seeds", "0..29"
    )
    assert code == 0, out
    assert "30 seeds run, 0 failures" in out


def test_an_outside_call_gets_the_effects_it_recorded_and_a_changed_callee_fails_on_it(
    calls_log: Path, tmp_path: Path
) -> None:
    source = (EXAMPLES / "agents" / "calls.py").read_text()
    # Only the call from outside asks for high=1000: only its outcome changes.
    changed = source.replace(
        "    return low + int(ctx.random() * (high - low + 1))\n",
        "    return low + int(ctx.random() * (high - low + 1)) + (high == 1000)\n",
        1,
    )
    assert changed != source
    path = tmp_path / "calls_changed.py"
    path.write_text(changed)
    code, out = invoke(str(path), "--log", str(calls_log), "--seeds", "0..4")
    assert code == 1, out
    assert "'c1/random_number@first' holds another item at seq 0" in out, out


def test_agent_instances_and_their_agent_state_come_back_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "sums.db"
    argv = [sys.executable, "-m", "perper.cli", "run", str(EXAMPLES / "agents" / "sums.py")]
    done = subprocess.run(
        [*argv, "--store", f"sqlite:///{log}", "--run", "s1", "--param", "count=20"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    code, out = invoke(str(EXAMPLES / "agents" / "sums.py"), "--log", str(log), "--seeds", "0..19")
    assert code == 0, out
    assert "20 seeds run, 0 failures" in out
