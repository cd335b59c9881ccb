"""The built wheel, installed in a fresh venv outside the checkout, runs the fabric and a run.

Nothing from the checkout is importable there: the venv has no access to the source tree,
the commands run from a directory outside it, and the jars and node work dir go to a
``$PERPER_HOME`` in the test's tmp dir, never into site-packages. The node uses its own
ports (thin-client 10940, discovery 47640.., communication 47240).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.ignite, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PORT = 10940
DISCOVERY_PORT = 47640
COMMUNICATION_PORT = 47240


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        command, capture_output=True, text=True, timeout=600, check=False, **kwargs
    )


def copy_of_the_checkout(target: Path) -> Path:
    """The checkout's source, copied: building a wheel leaves ``build/`` and
    ``*.egg-info`` where it builds, and the checkout is not the test's to write into."""
    generated = shutil.ignore_patterns(
        ".git",
        ".venv",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".*_cache",
        ".hypothesis",
        ".perper",
        "node_modules",
        "*.db-wal",
        "*.db-shm",
    )

    def skip(folder: str, names: list[str]) -> set[str]:
        ignored = set(generated(folder, names))
        if Path(folder) == REPO:
            ignored.add("fabric")  # the jar cache and the nodes' work dirs, not perper/fabric
        return ignored

    shutil.copytree(REPO, target, ignore=skip)
    return target


def test_the_wheel_installed_outside_the_checkout_starts_a_node_and_runs_the_basic_example(
    tmp_path: Path,
) -> None:
    dist = tmp_path / "dist"
    had_build = (REPO / "build").exists()
    source = copy_of_the_checkout(tmp_path / "source")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)]
    )
    assert built.returncode == 0, built.stderr
    assert not (REPO / "build").exists() or had_build, "the wheel was built in the checkout"
    (wheel,) = dist.glob("perper-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"perper/fabric/Node.java", "perper/fabric/pom.xml", "perper/py.typed"} <= names
    assert not any(name.startswith(("tests/", "fabric/")) for name in names)

    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    bin_dir = venv / "bin"
    installed = run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[ignite]"])
    assert installed.returncode == 0, installed.stderr

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(EXAMPLES / "basic.py", outside / "basic.py")
    home = tmp_path / "perper-home"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PERPER_STORE")
    }
    env["PERPER_HOME"] = str(home)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    perper = str(bin_dir / "perper")
    where = run(
        [str(bin_dir / "python"), "-c", "import perper; print(perper.__file__)"],
        cwd=outside,
        env=env,
    )
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(REPO) not in where.stdout

    version = run([perper, "-V"], cwd=outside, env=env)
    assert version.returncode == 0 and "0.1.0" in version.stdout

    node = [
        "--port", str(PORT), "--discovery-port", str(DISCOVERY_PORT),
        "--communication-port", str(COMMUNICATION_PORT), "--no-persistence",
    ]  # fmt: skip
    started = run([perper, "fabric", "start", *node], cwd=outside, env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "cluster ACTIVE" in started.stdout
        assert str(home) in started.stdout  # the work dir is under $PERPER_HOME
        url = f"ignite://127.0.0.1:{PORT}"
        ran = run(
            [perper, "run", "basic.py", "--store", url, "--run", "wheel", "--param", "count=7"],
            cwd=outside,
            env=env,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "run wheel done" in ran.stderr
        listed = run(
            [perper, "streams", "cat", "wheel/processor-1", "--store", url], cwd=outside, env=env
        )
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines() == ["[0, 1, 2]", "[3, 4, 5]", "[6]"]
    finally:
        stopped = run([perper, "fabric", "stop", "--port", str(PORT)], cwd=outside, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped 1 node(s)" in stopped.stdout

    site_packages = next((venv / "lib").glob("python*/site-packages"))
    assert not list((site_packages / "perper" / "fabric").glob("**/*.jar"))
    assert list(home.glob("ignite-*/lib/ignite-core-*.jar"))
    assert (home / "fabric" / str(PORT)).is_dir()
