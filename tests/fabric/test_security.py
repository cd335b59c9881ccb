"""A node with authentication and TLS, started by `perper fabric start`, and its clients.

The keystore is made by the JDK's keytool in the test's tmp dir. The node has its own
ports (thin-client 10960, discovery 47660.., communication 47260) and persistence (Ignite
keeps users there). Right credentials over TLS work; a wrong password and a client without
TLS each get a clear error, not "cannot reach"; the password never shows in any output
or in a worker's command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from perper.runtime.supervisor import worker_argv, worker_env
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.ignite, pytest.mark.slow]

PORT = 10960
NODE = ["--port", str(PORT), "--discovery-port", "47660", "--communication-port", "47260"]
PASSWORD = "s3cret-Pw"


def perper(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", *args],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running node with --auth --user bob and --tls-keystore; yields the CA file."""
    folder = tmp_path_factory.mktemp("secured")
    keystore, cert = folder / "node.p12", folder / "node.pem"
    for command in (
        ["keytool", "-genkeypair", "-alias", "node", "-keyalg", "RSA", "-keysize", "2048",
         "-validity", "2", "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1",
         "-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", "changeit",
         "-keypass", "changeit"],
        ["keytool", "-exportcert", "-rfc", "-alias", "node", "-keystore", str(keystore),
         "-storepass", "changeit", "-file", str(cert)],
    ):  # fmt: skip
        made = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        assert made.returncode == 0, made.stderr
    work = ["--work-dir", str(folder / "work")]
    env = {"PERPER_FABRIC_PASSWORD": PASSWORD, "PERPER_FABRIC_KEYSTORE_PASSWORD": "changeit"}
    started = perper(
        "fabric", "start", *NODE, *work, "--auth", "--user", "bob",
        "--tls-keystore", str(keystore), env=env,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert PASSWORD not in started.stdout + started.stderr
        yield cert
    finally:
        perper("fabric", "stop", "--port", str(PORT), *work)
    log = (folder / "work" / f"node-{PORT}.log").read_text()
    assert "user bob ready" in log
    assert PASSWORD not in log  # the node got it by environment; it never logs it
    cmdline_of_nodes = " ".join(
        p.read_text() for p in (folder / "work").glob("*.pid")
    )  # pid files hold pids only
    assert PASSWORD not in cmdline_of_nodes


def test_the_right_password_over_tls_runs_the_basic_example_on_workers(secured: Path) -> None:
    url = f"ignite://bob:{PASSWORD}@127.0.0.1:{PORT}?tls=1&tls_ca={secured}&namespace=ok"
    ran = perper("run", str(EXAMPLES / "basic.py"), "--store", url, "--run", "tls",
                 "--workers", "1", "-q")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "run tls done" in ran.stderr
    assert PASSWORD not in ran.stdout + ran.stderr
    assert "bob:***@" in ran.stderr
    cat = perper("streams", "cat", "tls/processor-1", "--store", url)
    assert cat.stdout.splitlines() == ["[0, 1, 2]", "[3, 4, 5]", "[6, 7, 8]", "[9]"]


def test_a_wrong_password_gets_a_clear_error_not_cannot_reach(secured: Path) -> None:
    url = f"ignite://bob:wrong-{PASSWORD}@127.0.0.1:{PORT}?tls=1&tls_ca={secured}&retry=2"
    ran = perper("streams", "ls", "--store", url)
    assert ran.returncode == 2
    assert "refused the credentials" in ran.stderr and "cannot reach" not in ran.stderr
    assert PASSWORD not in ran.stderr


def test_credentials_without_tls_are_refused_before_anything_is_sent(secured: Path) -> None:
    url = f"ignite://bob:{PASSWORD}@127.0.0.1:{PORT}?retry=2"
    ran = perper("streams", "ls", "--store", url)
    assert ran.returncode == 2
    assert "credentials without TLS" in ran.stderr and "tls=0" in ran.stderr
    assert PASSWORD not in ran.stderr


def test_a_client_without_tls_is_told_the_node_speaks_tls(secured: Path) -> None:
    url = f"ignite://bob:{PASSWORD}@127.0.0.1:{PORT}?tls=0&retry=2"
    ran = perper("streams", "ls", "--store", url)
    assert ran.returncode == 2
    assert "speaks TLS: add ?tls=1" in ran.stderr
    assert PASSWORD not in ran.stderr


def test_workers_get_the_store_url_by_environment_never_argv() -> None:
    url = f"ignite://bob:{PASSWORD}@127.0.0.1:{PORT}"
    argv = worker_argv("app.py", "r", lease_ttl=2.0)
    assert not any(PASSWORD in part or "ignite://" in part for part in argv)
    assert worker_env(url, {"PATH": "/bin"}) == {"PATH": "/bin", "PERPER_STORE": url}
