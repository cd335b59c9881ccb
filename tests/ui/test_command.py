"""``perper ui`` as a command: what it says when it cannot serve, or serves beyond loopback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.ui.conftest import PERPER, start_ui, stop_ui


def ui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PERPER, "ui", *args], capture_output=True, text=True, timeout=60)


def test_a_missing_sqlite_file_is_refused_not_created(tmp_path: Path):
    missing = tmp_path / "nothing.db"
    done = ui("--store", f"sqlite:///{missing}", "--port", "0")
    assert done.returncode == 2
    assert f"{missing} does not exist" in done.stderr
    assert not missing.exists()


def test_a_host_beyond_loopback_is_warned_about(tmp_path: Path):
    # The store is missing so nothing is ever served on 0.0.0.0; the warning comes first.
    done = ui("--store", f"sqlite:///{tmp_path / 'x.db'}", "--host", "0.0.0.0", "--port", "0")
    assert "not loopback: the UI has no authentication" in done.stderr


def test_the_default_host_is_loopback(known_log: Path):
    server = start_ui(f"sqlite:///{known_log}")
    try:
        assert server.address.startswith("http://127.0.0.1:")
    finally:
        stop_ui(server)
    assert server.process.returncode is not None


def test_a_port_in_use_says_to_pick_another(known_log: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ui("--store", f"sqlite:///{known_log}", "--port", str(port))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "pick another --port" in done.stderr
