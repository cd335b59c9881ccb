"""The local Ignite fabric: JVM options, tool checks, and a real node with persistence.

The node tests start their own small cluster on non-default ports (thin-client 10900,
discovery 47600..47609, communication 47200) in a pytest tmp dir, so they never touch a
developer's node on 10800, and always stop it again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perper import fabric

PORT = 10900
DISCOVERY_PORT = 47600
COMMUNICATION_PORT = 47200

BASE_OPENS = [
    "jdk.internal.access",
    "jdk.internal.misc",
    "sun.nio.ch",
    "sun.util.calendar",
    "sun.reflect.generics.reflectiveObjects",
    "java.io",
    "java.nio",
    "java.net",
    "java.util",
    "java.util.concurrent",
    "java.util.concurrent.locks",
    "java.util.concurrent.atomic",
    "java.lang",
    "java.lang.invoke",
    "java.math",
    "java.lang.reflect",
    "java.time",
    "java.text",
]
OTHER_OPENS = [
    "java.management/com.sun.jmx.mbeanserver",
    "jdk.internal.jvmstat/sun.jvmstat.monitor",
    "jdk.management/com.sun.management.internal",
    "java.sql/java.sql",
    "java.management/sun.management",
    "java.desktop/java.awt.font",
]


def test_java_options_open_every_package_ignite_needs_on_java_17() -> None:
    options = fabric.java_options()
    expected = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in BASE_OPENS]
    expected += [f"--add-opens={target}=ALL-UNNAMED" for target in OTHER_OPENS]
    missing = [opt for opt in expected if opt not in options]
    assert missing == []
    assert "-DIGNITE_UPDATE_NOTIFIER=false" in options
    assert "-Djava.net.preferIPv4Stack=true" in options
    assert "-XX:+UseG1GC" in options
    assert any(opt.startswith("-Xmx") for opt in options)


def test_a_missing_java_raises_an_error_naming_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))

    with pytest.raises(fabric.FabricError) as jars_error:
        fabric.ensure_jars(tmp_path / "lib")
    assert "java" in str(jars_error.value)
    assert fabric.INSTALL_HINT in str(jars_error.value)
    assert "openjdk-17-jdk-headless" in str(jars_error.value)

    with pytest.raises(fabric.FabricError, match="openjdk-17-jdk-headless"):
        fabric.start(port=PORT, work_dir=tmp_path / "work", timeout=5.0)
    assert not (tmp_path / "work").exists() or not list((tmp_path / "work").glob("*.pid"))


def test_status_of_a_work_dir_with_no_node_reports_nothing_running(tmp_path: Path) -> None:
    result = fabric.status(port=PORT, work_dir=tmp_path)
    assert not result.running
    assert result.nodes == ()
    assert "0 node(s) running" in str(result)
    assert fabric.stop(port=PORT, work_dir=tmp_path) == 0


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    """A work dir for the test cluster; whatever runs there is stopped afterwards."""
    work_dir = tmp_path / "fabric"
    try:
        yield work_dir
    finally:
        fabric.stop(port=PORT, work_dir=work_dir, timeout=30.0)


def _start(work_dir: Path) -> fabric.FabricStatus:
    return fabric.start(
        port=PORT,
        work_dir=work_dir,
        persistence=True,
        discovery_port=DISCOVERY_PORT,
        communication_port=COMMUNICATION_PORT,
        timeout=180.0,
    )


def _client() -> Any:
    from pyignite import Client

    client = Client(partition_aware=False, timeout=10.0)
    client.connect("127.0.0.1", PORT)
    return client


@pytest.mark.ignite
@pytest.mark.slow
def test_data_and_sql_tables_survive_a_restart_with_persistence(cluster_dir: Path) -> None:
    started = time.monotonic()
    first = _start(cluster_dir)
    cold_start = time.monotonic() - started
    assert first.active, str(first)
    assert [(n.index, n.port, n.alive) for n in first.nodes] == [(0, PORT, True)]
    pid = first.nodes[0].pid

    client = _client()
    try:
        segments = client.get_cache(fabric.SEGMENTS_CACHE)
        segments.put("stream-a/0", b"first item")
        segments.put("stream-a/1", b"second item")
        assert segments.get("stream-a/0") == b"first item"
        meta = client.get_cache(fabric.META_CACHE)
        meta.put("stream-a/head", 1)
        assert meta.replace_if_equals("stream-a/head", 1, 2)
        assert not meta.replace_if_equals("stream-a/head", 1, 3)
        assert meta.get("stream-a/head") == 2
        # SQL needs ignite-indexing; indexed streams create their tables from this template.
        list(
            client.sql(
                'CREATE TABLE fabric_sql (seq BIGINT PRIMARY KEY, "user" BIGINT) '
                'WITH "template=perper_index"'
            )
        )
        list(client.sql('INSERT INTO fabric_sql (seq, "user") VALUES (?, ?)', query_args=[1, 42]))
    finally:
        client.close()

    reported = fabric.status(port=PORT, work_dir=cluster_dir)
    assert reported.running
    assert reported.reachable
    assert reported.cluster_state == "ACTIVE"
    assert reported.nodes[0].pid == pid
    assert f"port {PORT}, pid {pid}, running" in str(reported)

    again = _start(cluster_dir)  # already running: no second node
    assert [n.pid for n in again.nodes] == [pid]

    assert fabric.stop(port=PORT, work_dir=cluster_dir) == 1
    stopped = fabric.status(port=PORT, work_dir=cluster_dir)
    assert not stopped.running
    assert not stopped.reachable
    assert list(cluster_dir.glob("*.pid")) == []
    assert fabric.stop(port=PORT, work_dir=cluster_dir) == 0  # idempotent

    restarted = _start(cluster_dir)
    assert restarted.active, str(restarted)
    assert restarted.nodes[0].pid != pid

    client = _client()
    try:
        assert client.get_cache(fabric.SEGMENTS_CACHE).get("stream-a/1") == b"second item"
        assert client.get_cache(fabric.META_CACHE).get("stream-a/head") == 2
        found = client.sql('SELECT "user" FROM fabric_sql WHERE seq = ?', query_args=[1])
        assert list(found) == [[42]]
    finally:
        client.close()

    killed = fabric.kill_node(0, port=PORT, work_dir=cluster_dir)
    assert killed.pid == restarted.nodes[0].pid
    assert not fabric.status(port=PORT, work_dir=cluster_dir).running
    with pytest.raises(fabric.FabricError, match="not running"):
        fabric.kill_node(0, port=PORT, work_dir=cluster_dir)
    # Generous bound: only catches a start that waits for something it should not.
    assert cold_start < 120.0


def test_jars_and_work_dirs_go_under_perper_home_when_it_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERPER_HOME", str(tmp_path / "home"))
    assert fabric.jars_dir() == tmp_path / "home" / f"ignite-{fabric.IGNITE_VERSION}" / "lib"
    assert fabric.default_work_dir(10850) == tmp_path / "home" / "fabric" / "10850"


def test_without_perper_home_jars_are_cached_and_work_dirs_are_data_per_xdg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERPER_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert fabric.jars_dir().is_relative_to(tmp_path / "cache" / "perper")
    assert fabric.default_work_dir(10850) == tmp_path / "data" / "perper" / "fabric" / "10850"
    package = fabric.package_dir()
    assert (package / "Node.java").is_file() and (package / "pom.xml").is_file()
    assert not fabric.jars_dir().is_relative_to(package)
