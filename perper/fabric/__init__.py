"""Local Apache Ignite 2.x nodes for development and tests ("the fabric").

The fabric is a real Ignite server (``Node.java`` beside this module, shipped as package
data and run in Java source mode against the jars Maven puts in :func:`jars_dir`), bound to
127.0.0.1 only. This module starts, stops and
inspects such nodes as detached background processes:

* :func:`ensure_jars` fetches the pinned Ignite jars once (Maven).
* :func:`start` starts one or more server nodes and returns when every node answers on its
  thin-client port and the cluster is ACTIVE.
* :func:`stop` stops every node of a work directory (SIGTERM, then SIGKILL).
* :func:`status` reports which nodes run and what state the cluster is in.
* :func:`kill_node` SIGKILLs one node, for failover tests.

Per work directory (default :func:`default_work_dir`) the layout is::

    node-<port>.pid     pid of the node whose thin-client port is <port>
    node-<port>.log     its stdout/stderr (the Ignite log), appended across restarts
    node-<port>/        its Ignite work directory (persistence files live in node-<port>/db)
    fabric.lock         serializes start/stop of this work directory across processes

This is developer tooling, not runtime code: it uses real sleeps and ``time.monotonic``.
``pyignite`` is imported lazily so that importing this module never requires it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from perper.errors import FabricError as FabricError  # re-exported

__all__ = [
    "DEFAULT_COMMUNICATION_PORT",
    "DEFAULT_DISCOVERY_PORT",
    "DEFAULT_MEMORY_MB",
    "DEFAULT_PORT",
    "IGNITE_VERSION",
    "INSTALL_HINT",
    "META_CACHE",
    "SEGMENTS_CACHE",
    "ClientLogin",
    "FabricError",
    "FabricStatus",
    "NodeStatus",
    "default_work_dir",
    "ensure_jars",
    "jars_dir",
    "java_options",
    "kill_node",
    "package_dir",
    "perper_home",
    "start",
    "status",
    "stop",
]

IGNITE_VERSION = "2.17.0"
"""The Apache Ignite version pinned in ``perper/fabric/pom.xml``."""

DEFAULT_PORT = 10800
"""Thin-client port of the first node."""

DEFAULT_DISCOVERY_PORT = 47500
"""First port of the discovery range (the range is ``DISCOVERY_RANGE`` ports wide)."""

DEFAULT_COMMUNICATION_PORT = 47100
"""TCP communication port of the first node."""

DEFAULT_MEMORY_MB = 256
"""Maximum size of each node's default data region, in MiB."""

DISCOVERY_RANGE = 10
"""Width of the discovery port range: at most this many nodes per cluster."""

SEGMENTS_CACHE = "perper_segments"
"""ATOMIC cache the node creates at start."""

META_CACHE = "perper_meta"
"""TRANSACTIONAL cache the node creates at start."""

HOST = "127.0.0.1"
"""Every port the fabric opens is bound to this address, and only this one."""

INSTALL_HINT = "apt-get install openjdk-17-jdk-headless maven"
"""What to install when ``java`` or ``mvn`` is missing."""

HOME_ENV = "PERPER_HOME"
"""Environment variable naming the directory for downloaded jars and node work dirs."""

USER_ENV = "PERPER_FABRIC_USER"
"""The user a node with ``auth`` creates (and perper's probes log in as)."""

PASSWORD_ENV = "PERPER_FABRIC_PASSWORD"
"""That user's password: an environment variable, never a command-line argument."""

KEYSTORE_PASSWORD_ENV = "PERPER_FABRIC_KEYSTORE_PASSWORD"
"""The password of the TLS keystore given to ``start(tls_keystore=...)``."""

LOG_TAIL_LINES = 30
"""How many lines of a node log a :class:`FabricError` quotes."""

_MARKER_NAME = ".perper-jars.json"
_LOCK_NAME = "fabric.lock"
_POLL_INTERVAL = 0.5
_PROBE_TIMEOUT = 2.0
_KILL_GRACE = 10.0
_STARTED_MARKER = b"[perper-fabric] node started"

_JAVA_BASE_OPENS = (
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
)
_OTHER_OPENS = (
    "java.management/com.sun.jmx.mbeanserver",
    "jdk.internal.jvmstat/sun.jvmstat.monitor",
    "jdk.management/com.sun.management.internal",
    "java.sql/java.sql",
    "java.management/sun.management",
    "java.desktop/java.awt.font",
)
_JVM_FLAGS = (
    "-DIGNITE_UPDATE_NOTIFIER=false",
    "-Djava.net.preferIPv4Stack=true",
    "-Xms512m",
    "-Xmx1g",
    "-XX:+UseG1GC",
)


@dataclass(frozen=True)
class NodeStatus:
    """One node of a work directory, as recorded by its pid file.

    Attributes:
        index: Position in the cluster: the node's thin-client port is ``base port + index``.
        port: Thin-client port of the node.
        pid: Process id from the pid file.
        alive: Whether that process is still a running fabric node.
        log_path: Where the node writes its log.
    """

    index: int
    port: int
    pid: int
    alive: bool
    log_path: Path


@dataclass(frozen=True)
class FabricStatus:
    """What runs for one work directory and base port.

    Attributes:
        port: Base thin-client port (node ``i`` listens on ``port + i``).
        work_dir: The work directory holding pid files, logs and node data.
        nodes: Nodes that have a pid file, alive or not, ordered by index.
        reachable: Whether a thin-client port (the base port, else any live node's) answered a
            pyignite handshake.
        cluster_state: ``"ACTIVE"``, ``"INACTIVE"`` or ``"ACTIVE_READ_ONLY"`` as reported over
            that connection, or ``None`` when nothing answered.
    """

    port: int
    work_dir: Path
    nodes: tuple[NodeStatus, ...]
    reachable: bool
    cluster_state: str | None

    @property
    def running(self) -> bool:
        """Whether at least one node process of this work directory is alive."""
        return any(node.alive for node in self.nodes)

    @property
    def active(self) -> bool:
        """Whether the cluster answered and is ACTIVE (ready for reads and writes)."""
        return self.reachable and self.cluster_state == "ACTIVE"

    @property
    def live_nodes(self) -> tuple[NodeStatus, ...]:
        """The nodes whose process is alive."""
        return tuple(node for node in self.nodes if node.alive)

    def __str__(self) -> str:
        live = len(self.live_nodes)
        if self.reachable:
            head = f"fabric on {HOST}:{self.port}: cluster {self.cluster_state}"
        else:
            head = f"fabric on {HOST}:{self.port}: thin-client port not answering"
        lines = [f"{head}, {live} node(s) running (work dir {self.work_dir})"]
        for node in self.nodes:
            state = "running" if node.alive else "not running (stale pid file)"
            lines.append(f"  node {node.index}: port {node.port}, pid {node.pid}, {state}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- locations


def package_dir() -> Path:
    """The directory of this package, holding ``Node.java`` and ``pom.xml`` (package data).

    Raises:
        FabricError: If ``Node.java`` is missing (a broken installation).
    """
    here = Path(__file__).resolve().parent
    if not (here / "Node.java").is_file() or not (here / "pom.xml").is_file():
        raise FabricError(
            f"{here} has no Node.java or pom.xml: this perper installation is incomplete; "
            "reinstall it (pip install --force-reinstall 'perper[ignite]')"
        )
    return here


def perper_home() -> Path | None:
    """``$PERPER_HOME`` if set (expanded), else None (the XDG directories apply)."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser().resolve() if value else None


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    base = Path(value) if value and Path(value).is_absolute() else Path.home() / fallback
    return base / "perper"


def jars_dir() -> Path:
    """Where the Ignite jars are downloaded: never inside the installed package.

    Returns:
        ``$PERPER_HOME/ignite-<version>/lib`` if ``$PERPER_HOME`` is set, else
        ``$XDG_CACHE_HOME/perper/ignite-<version>/lib`` (``~/.cache/perper/...``).
    """
    base = perper_home() or _xdg("XDG_CACHE_HOME", ".cache")
    return base / f"ignite-{IGNITE_VERSION}" / "lib"


def default_work_dir(port: int = DEFAULT_PORT) -> Path:
    """The default work directory for a cluster whose first thin-client port is ``port``.

    Args:
        port: Base thin-client port.

    Returns:
        ``$PERPER_HOME/fabric/<port>`` if ``$PERPER_HOME`` is set, else
        ``$XDG_DATA_HOME/perper/fabric/<port>`` (``~/.local/share/perper/fabric/<port>``).
    """
    base = perper_home() or _xdg("XDG_DATA_HOME", ".local/share")
    return base / "fabric" / str(port)


def _resolve_work_dir(port: int, work_dir: str | os.PathLike[str] | None) -> Path:
    if work_dir is None:
        return default_work_dir(port)
    return Path(work_dir).expanduser().resolve()


def _pid_path(work_dir: Path, node_port: int) -> Path:
    return work_dir / f"node-{node_port}.pid"


def _log_path(work_dir: Path, node_port: int) -> Path:
    return work_dir / f"node-{node_port}.log"


def _node_dir(work_dir: Path, node_port: int) -> Path:
    return work_dir / f"node-{node_port}"


# --------------------------------------------------------------------------- tools and jars


def _require_tool(name: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FabricError(
            f"`{name}` not found on PATH; it is needed {purpose}. "
            f"Install Java 17 and Maven: {INSTALL_HINT}"
        )
    return path


def _java() -> str:
    return _require_tool("java", "to run the local Apache Ignite node")


def _check_java_version(java: str) -> None:
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FabricError(f"cannot run `{java} -version`: {exc}. Install: {INSTALL_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        return  # unknown format: let the node itself complain
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 11:
        raise FabricError(
            f"`{java}` is Java {major}; the local Ignite node needs Java 11+ "
            f"(17 recommended): {INSTALL_HINT}"
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jars_complete(lib: Path, pom: Path) -> bool:
    marker = lib / _MARKER_NAME
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("pom_sha256") != _sha256(pom):
        return False
    jars = recorded.get("jars")
    if not isinstance(jars, list) or not jars:
        return False
    return all(isinstance(name, str) and (lib / name).is_file() for name in jars)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_jars(lib: str | os.PathLike[str] | None = None) -> Path:
    """Make sure ``lib`` holds the pinned Ignite jars, running Maven if needed.

    Maven runs only when the marker file written after the last successful download is missing,
    names a jar that is gone, or was made from a different ``pom.xml``. Concurrent callers
    (e.g. pytest-xdist workers) serialize on a lock file, so Maven runs at most once.

    Args:
        lib: The directory for the jars (default :func:`jars_dir`).

    Returns:
        The jar directory.

    Raises:
        FabricError: If ``java`` is missing, or jars are needed and ``mvn`` is missing or fails.
    """
    pom = package_dir() / "pom.xml"
    lib = Path(lib) if lib is not None else jars_dir()
    _java()
    if not pom.is_file():
        raise FabricError(f"{pom} is missing: cannot fetch the Apache Ignite jars")
    if _jars_complete(lib, pom):
        return lib
    mvn = _require_tool("mvn", f"once, to download the Apache Ignite jars into {lib}")
    lib.mkdir(parents=True, exist_ok=True)
    with _file_lock(lib / ".lock"):
        if _jars_complete(lib, pom):
            return lib
        print(
            f"perper fabric: fetching Apache Ignite {IGNITE_VERSION} jars into {lib} "
            "with Maven (one time only)...",
            file=sys.stderr,
            flush=True,
        )
        started = time.monotonic()
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            "-DincludeScope=runtime",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FabricError(f"Maven could not fetch the Ignite jars: {exc}") from exc
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip().splitlines()
            raise FabricError(
                f"Maven failed (exit {proc.returncode}) fetching the Ignite jars; Maven Central "
                f"must be reachable. Command: {' '.join(cmd)}",
                log_tail="\n".join(output[-LOG_TAIL_LINES:]),
            )
        jars = sorted(p.name for p in lib.glob("*.jar"))
        if f"ignite-core-{IGNITE_VERSION}.jar" not in jars:
            raise FabricError(
                f"Maven finished but {lib} has no ignite-core-{IGNITE_VERSION}.jar (found: {jars})"
            )
        marker = {"pom_sha256": _sha256(pom), "ignite_version": IGNITE_VERSION, "jars": jars}
        tmp = lib / (_MARKER_NAME + ".tmp")
        tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        tmp.replace(lib / _MARKER_NAME)
        print(
            f"perper fabric: {len(jars)} jars ready in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return lib


def java_options() -> list[str]:
    """JVM options for an Ignite 2.x node on Java 11+ (17 included).

    Ignite reaches into JDK internals (direct buffers, Unsafe, JMX, serialization of JDK
    classes); without these ``--add-opens`` it fails at start or later with
    ``InaccessibleObjectException``. The list is the one Ignite documents for Java 11+.

    Returns:
        The ``--add-opens`` flags, the no-update-notifier and IPv4 properties, a heap of
        512 MiB..1 GiB and G1.
    """
    opens = [f"--add-opens=java.base/{pkg}=ALL-UNNAMED" for pkg in _JAVA_BASE_OPENS]
    opens += [f"--add-opens={target}=ALL-UNNAMED" for target in _OTHER_OPENS]
    return [*opens, *_JVM_FLAGS]


# --------------------------------------------------------------------------- processes


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def _is_node_process(pid: int, node_port: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) fabric node serving ``node_port``."""
    proc = Path("/proc") / str(pid)
    if proc.is_dir():
        try:
            stat = (proc / "stat").read_text(encoding="ascii", errors="replace")
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        state = stat.rsplit(")", 1)[-1].split()
        if state and state[0] in ("Z", "X"):
            # A zombie main thread only means the process is gone once its other threads are:
            # until then they still hold its files (and so its listening ports).
            try:
                return len(os.listdir(proc / "task")) > 1
            except OSError:
                return False
        args = [arg.decode(errors="replace") for arg in cmdline]
        if not any(arg.endswith("Node.java") for arg in args):
            return False
        return any(
            arg == "--port" and i + 1 < len(args) and args[i + 1] == str(node_port)
            for i, arg in enumerate(args)
        )
    try:  # no /proc (not Linux): trust the pid file
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_files(work_dir: Path) -> list[tuple[int, Path]]:
    found: list[tuple[int, Path]] = []
    if not work_dir.is_dir():
        return found
    for path in work_dir.glob("node-*.pid"):
        match = re.fullmatch(r"node-(\d+)\.pid", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def _node_statuses(port: int, work_dir: Path) -> tuple[NodeStatus, ...]:
    nodes: list[NodeStatus] = []
    for node_port, pid_file in _pid_files(work_dir):
        pid = _read_pid(pid_file)
        if pid is None:
            continue
        nodes.append(
            NodeStatus(
                index=node_port - port,
                port=node_port,
                pid=pid,
                alive=_is_node_process(pid, node_port),
                log_path=_log_path(work_dir, node_port),
            )
        )
    return tuple(nodes)


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _listening_ports() -> set[int] | None:
    """TCP ports in LISTEN state on this host (any address), or None if /proc is unavailable."""
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":  # 0A = TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something listens on ``port``.

    Reads /proc/net/tcp where possible rather than connecting: a bare TCP connect that sends
    nothing makes Ignite log "Unable to perform handshake within timeout" for every probe.
    """
    listening = _listening_ports()
    if listening is not None:
        return port in listening
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _close_client(client: object) -> None:
    """Close a pyignite client, including sockets pyignite 0.6.1 would leak.

    When a connect fails (refused, reset), pyignite keeps the unconnected socket and its
    ``close()`` then fails on ``shutdown()`` and drops the socket without closing it, which
    surfaces later as a ``ResourceWarning`` (an error under ``filterwarnings = error``).
    """
    for conn in getattr(client, "_nodes", ()):
        sock = getattr(conn, "_socket", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
    with contextlib.suppress(Exception):
        client.close()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ClientLogin:
    """How perper's own probes talk to a node's thin-client port (never stored on disk).

    Attributes:
        username: the user to log in as on a node with authentication (None: no login).
        password: its password.
        tls: whether the port speaks TLS (the probe does not check the node's certificate:
            it only asks a local node for its state).
    """

    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def from_env(cls, *, auth: bool = False, tls: bool = False) -> ClientLogin:
        """The login of ``$PERPER_FABRIC_USER``/``$PERPER_FABRIC_PASSWORD``, else
        Ignite's default user when ``auth``."""
        user = os.environ.get(USER_ENV) or None
        password = os.environ.get(PASSWORD_ENV) or None
        if user is None and auth:
            user, password = "ignite", "ignite"
        return cls(user, password, tls)


def _probe(port: int, login: ClientLogin | None = None) -> str | None:
    """Cluster state seen through the thin-client port ``port``, or None if it does not answer."""
    if not _port_open(port):
        return None
    from pyignite import Client

    options: dict[str, object] = {}
    if login is not None:
        if login.username is not None:
            options["username"] = login.username
            options["password"] = login.password or ""
        if login.tls:
            import ssl

            options["use_ssl"] = True
            options["ssl_cert_reqs"] = ssl.CERT_NONE
    client = Client(
        partition_aware=False,
        timeout=_PROBE_TIMEOUT,
        handshake_timeout=_PROBE_TIMEOUT,
        **options,
    )
    try:
        client.connect(HOST, port)
        state = client.get_cluster().get_state()
    except Exception:  # any failure means "not answering (yet)"
        return None
    finally:
        _close_client(client)
    from pyignite.datatypes.cluster_state import ClusterState

    try:
        name: str = ClusterState(int(state)).name
    except (TypeError, ValueError):
        name = str(state)
    return name


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_dead(nodes: list[NodeStatus], timeout: float) -> list[NodeStatus]:
    deadline = time.monotonic() + timeout
    remaining = [n for n in nodes if _is_node_process(n.pid, n.port)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [n for n in remaining if _is_node_process(n.pid, n.port)]
    return remaining


def _terminate(nodes: list[NodeStatus], timeout: float) -> None:
    for node in nodes:
        _signal(node.pid, signal.SIGTERM)
    stragglers = _wait_dead(nodes, timeout)
    for node in stragglers:
        _signal(node.pid, signal.SIGKILL)
    _wait_dead(stragglers, _KILL_GRACE)


def _launch(
    *,
    java: str,
    lib: Path,
    node_java: Path,
    work_dir: Path,
    node_port: int,
    args: list[str],
    env: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Start one node detached from this process and record its pid.

    Returns:
        The node's pid and the offset in its log where this run's output starts.
    """
    log = _log_path(work_dir, node_port)
    with log.open("ab") as handle:
        offset = handle.tell()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        banner = f"\n===== perper fabric: starting node on port {node_port} at {stamp} =====\n"
        handle.write(banner.encode())
    cmd = [java, *java_options(), "-cp", f"{lib}/*", str(node_java), *args]
    # The shell backgrounds java and exits at once, so the node is not our child: no zombie is
    # left when it dies, and nothing is tied to this Python process's lifetime.
    script = 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!'
    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", script, "perper-fabric", str(log), *cmd],
            cwd=work_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FabricError(f"could not launch the Ignite node on port {node_port}: {exc}") from exc
    try:
        pid = int(proc.stdout.strip())
    except ValueError as exc:
        raise FabricError(
            f"could not launch the Ignite node on port {node_port}: {proc.stderr.strip()}"
        ) from exc
    _pid_path(work_dir, node_port).write_text(f"{pid}\n", encoding="ascii")
    return pid, offset


def _log_has(path: Path, offset: int, marker: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return marker in handle.read()
    except OSError:
        return False


def _check_ports_free(*, port: int, communication_port: int, indices: list[int]) -> None:
    for i in indices:
        for what, p in (("thin-client", port + i), ("communication", communication_port + i)):
            if _port_open(p):
                raise FabricError(
                    f"{what} port {HOST}:{p} is already in use by another process; stop it, or "
                    "pick other ports (--port / --communication-port)"
                )


def _check_discovery_free(discovery_port: int) -> None:
    for p in range(discovery_port, discovery_port + DISCOVERY_RANGE):
        if _port_open(p):
            raise FabricError(
                f"discovery port {HOST}:{p} is in use: another Ignite cluster is running on the "
                f"discovery range {discovery_port}..{discovery_port + DISCOVERY_RANGE - 1} and a "
                "new node would join it; stop it or pass another --discovery-port"
            )


# --------------------------------------------------------------------------- public API


def status(
    *,
    port: int = DEFAULT_PORT,
    work_dir: str | os.PathLike[str] | None = None,
    login: ClientLogin | None = None,
) -> FabricStatus:
    """Report the nodes of a work directory and the cluster state.

    Args:
        port: Base thin-client port of the cluster.
        work_dir: Its work directory (default :func:`default_work_dir`).
        login: how to log in to a node with authentication or TLS.

    Returns:
        The nodes recorded by pid files and what the thin-client port answers.
    """
    wd = _resolve_work_dir(port, work_dir)
    nodes = _node_statuses(port, wd)
    candidates = [port] + [n.port for n in nodes if n.alive and n.port != port]
    state: str | None = None
    for candidate in candidates:
        state = _probe(candidate, login)
        if state is not None:
            break
    return FabricStatus(
        port=port, work_dir=wd, nodes=nodes, reachable=state is not None, cluster_state=state
    )


def start(
    *,
    port: int = DEFAULT_PORT,
    work_dir: str | os.PathLike[str] | None = None,
    persistence: bool = True,
    nodes: int = 1,
    discovery_port: int = DEFAULT_DISCOVERY_PORT,
    communication_port: int = DEFAULT_COMMUNICATION_PORT,
    timeout: float = 180.0,
    backups: int | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    auth: bool = False,
    username: str | None = None,
    password: str | None = None,
    tls_keystore: str | os.PathLike[str] | None = None,
    tls_keystore_password: str | None = None,
) -> FabricStatus:
    """Start ``nodes`` local Ignite server nodes and wait until the cluster is ACTIVE.

    Node ``i`` uses thin-client port ``port + i`` and communication port
    ``communication_port + i``; all share the discovery range ``discovery_port..+9``. Nodes
    already running for this work directory are left alone (only missing ones are started), so
    calling this twice is harmless. On timeout or if a node dies while starting, the nodes
    started by this call are stopped again and the error quotes the node log.

    Args:
        port: Thin-client port of the first node.
        work_dir: Work directory for pid files, logs and data (default
            :func:`default_work_dir`). Reusing it after a restart reuses the data.
        persistence: Native persistence (data survives restarts). Off: pure in-memory.
        nodes: Number of server nodes (1..10).
        discovery_port: First port of the discovery range; separate clusters need separate ranges.
        communication_port: Communication port of the first node.
        timeout: Seconds to wait for the whole cluster to be ACTIVE.
        backups: Backups of the perper caches (default 0 for one node, 1 for more). Only applies
            when the caches are first created; persisted caches keep their configuration.
        memory_mb: Maximum size of each node's default data region in MiB.
        auth: Thin clients must log in (needs ``persistence``: Ignite keeps users there).
        username: With ``auth``, a user the node creates (or whose password it sets) once
            the cluster is ACTIVE; None leaves only Ignite's default user ``ignite``.
        password: That user's password. Handed to the node in its environment, never argv.
        tls_keystore: A JKS or PKCS#12 keystore (e.g. made by the JDK's ``keytool``): the
            thin-client port then speaks TLS only.
        tls_keystore_password: The keystore's password (environment, never argv).

    Returns:
        The status of the running, ACTIVE cluster.

    Raises:
        FabricError: Missing tools, ports in use, a node dying, or the timeout expiring.
    """
    if not 1 <= nodes <= DISCOVERY_RANGE:
        raise FabricError(f"nodes must be between 1 and {DISCOVERY_RANGE}, got {nodes}")
    if timeout <= 0:
        raise FabricError(f"timeout must be positive, got {timeout}")
    if memory_mb < 32:
        raise FabricError(f"memory_mb must be at least 32, got {memory_mb}")
    if auth and not persistence:
        raise FabricError(
            "authentication needs persistence (Ignite keeps its users in the persistent "
            "store): drop --no-persistence"
        )
    if username is not None and not auth:
        raise FabricError(f"user {username!r} given without authentication: add --auth")
    keystore = None
    if tls_keystore is not None:
        keystore = Path(tls_keystore).expanduser().resolve()
        if not keystore.is_file():
            raise FabricError(f"TLS keystore {keystore} does not exist; make one with keytool")
    login = ClientLogin(
        username if username is not None else ("ignite" if auth else None),
        password if username is not None else ("ignite" if auth else None),
        keystore is not None,
    )
    node_env = dict(os.environ)
    for name in (USER_ENV, PASSWORD_ENV, KEYSTORE_PASSWORD_ENV):
        node_env.pop(name, None)
    if username is not None:
        node_env[USER_ENV] = username
        node_env[PASSWORD_ENV] = password or ""
    if keystore is not None:
        node_env[KEYSTORE_PASSWORD_ENV] = tls_keystore_password or ""
    top = max(port, communication_port) + nodes - 1
    if min(port, discovery_port, communication_port) < 1 or max(top, discovery_port + 9) > 65535:
        raise FabricError("ports must lie between 1 and 65535")
    node_java = package_dir() / "Node.java"
    lib = ensure_jars()
    java = _java()
    wd = _resolve_work_dir(port, work_dir)
    wd.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout

    with _file_lock(wd / _LOCK_NAME):
        existing = {n.port: n for n in _node_statuses(port, wd)}
        wanted = [port + i for i in range(nodes)]
        alive = [p for p in wanted if p in existing and existing[p].alive]
        missing = [p for p in wanted if p not in alive]
        for p in missing:  # stale pid files of dead nodes
            _pid_path(wd, p).unlink(missing_ok=True)

        launched: list[NodeStatus] = []
        log_offsets: dict[int, int] = {}
        if missing:
            _check_java_version(java)
            _check_ports_free(
                port=port,
                communication_port=communication_port,
                indices=[p - port for p in missing],
            )
            if not alive:
                _check_discovery_free(discovery_port)
        try:
            for node_port in missing:
                index = node_port - port
                args = [
                    "--port", str(node_port),
                    "--discovery-port", str(discovery_port),
                    "--communication-port", str(communication_port + index),
                    "--work-dir", str(_node_dir(wd, node_port)),
                    "--nodes", str(nodes),
                    "--memory-mb", str(memory_mb),
                ]  # fmt: skip
                if backups is not None:
                    args += ["--backups", str(backups)]
                if not persistence:
                    args.append("--no-persistence")
                if auth:
                    args.append("--auth")
                if keystore is not None:
                    args += ["--tls-keystore", str(keystore)]
                pid, log_offsets[node_port] = _launch(
                    java=java,
                    lib=lib,
                    node_java=node_java,
                    work_dir=wd,
                    node_port=node_port,
                    args=args,
                    env=node_env,
                )
                launched.append(NodeStatus(index, node_port, pid, True, _log_path(wd, node_port)))
            _wait_ready(port, wd, wanted, log_offsets, deadline, timeout, login)
        except BaseException:
            _terminate(launched, timeout=15.0)
            for node in launched:
                _pid_path(wd, node.port).unlink(missing_ok=True)
            raise
    return status(port=port, work_dir=wd, login=login)


def _wait_ready(
    port: int,
    work_dir: Path,
    wanted: list[int],
    log_offsets: dict[int, int],
    deadline: float,
    timeout: float,
    login: ClientLogin | None = None,
) -> None:
    """Poll until every wanted node answers on its thin-client port with cluster state ACTIVE.

    Nodes launched by this call are probed only once their log says Ignite has started: before
    that the thin-client port may be open but refuses handshakes ("Node in recovery mode"), and
    pyignite retries such refusals in a tight loop.
    """
    pending = list(wanted)
    last_state: dict[int, str | None] = {}
    while True:
        nodes = {n.port: n for n in _node_statuses(port, work_dir)}
        for node_port in wanted:
            node = nodes.get(node_port)
            if node is None or not _is_node_process(node.pid, node_port):
                log = _log_path(work_dir, node_port)
                raise FabricError(
                    f"the Ignite node on port {node_port} exited while starting (log: {log})",
                    log_path=log,
                    log_tail=_log_tail(log),
                )
        still: list[int] = []
        for node_port in pending:
            offset = log_offsets.get(node_port)
            if offset is not None and not _log_has(
                _log_path(work_dir, node_port), offset, _STARTED_MARKER
            ):
                still.append(node_port)
                continue
            state = _probe(node_port, login)
            last_state[node_port] = state
            if state != "ACTIVE":
                still.append(node_port)
        pending = still
        if not pending:
            return
        if time.monotonic() >= deadline:
            node_port = pending[0]
            log = _log_path(work_dir, node_port)
            seen = last_state.get(node_port) or "no answer on the thin-client port"
            raise FabricError(
                f"the Ignite node on port {node_port} was not ACTIVE after {timeout:.0f}s "
                f"({seen}; log: {log})",
                log_path=log,
                log_tail=_log_tail(log),
            )
        time.sleep(_POLL_INTERVAL)


def stop(
    *,
    port: int = DEFAULT_PORT,
    work_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> int:
    """Stop every node of a work directory: SIGTERM, wait, SIGKILL stragglers. Idempotent.

    Args:
        port: Base thin-client port of the cluster (selects the default work directory).
        work_dir: Its work directory (default :func:`default_work_dir`).
        timeout: Seconds to wait after SIGTERM before sending SIGKILL.

    Returns:
        How many live nodes were stopped (0 when nothing was running).
    """
    wd = _resolve_work_dir(port, work_dir)
    if not wd.is_dir():
        return 0
    with _file_lock(wd / _LOCK_NAME):
        nodes = list(_node_statuses(port, wd))
        live = [n for n in nodes if n.alive]
        _terminate(live, timeout=timeout)
        for node_port, pid_file in _pid_files(wd):
            pid = _read_pid(pid_file)
            if pid is None or not _is_node_process(pid, node_port):
                pid_file.unlink(missing_ok=True)
    return len(live)


def kill_node(
    index: int, *, port: int = DEFAULT_PORT, work_dir: str | os.PathLike[str] | None = None
) -> NodeStatus:
    """SIGKILL one node (no clean shutdown), for failover tests.

    Args:
        index: Which node: the one whose thin-client port is ``port + index``.
        port: Base thin-client port of the cluster.
        work_dir: Its work directory (default :func:`default_work_dir`).

    Returns:
        The killed node (``alive`` as it was before the kill).

    Raises:
        FabricError: If that node is not running.
    """
    wd = _resolve_work_dir(port, work_dir)
    node_port = port + index
    pid_file = _pid_path(wd, node_port)
    pid = _read_pid(pid_file)
    if pid is None or not _is_node_process(pid, node_port):
        raise FabricError(f"node {index} (port {node_port}) of {wd} is not running")
    node = NodeStatus(index, node_port, pid, True, _log_path(wd, node_port))
    _signal(pid, signal.SIGKILL)
    if _wait_dead([node], _KILL_GRACE):
        raise FabricError(f"node {index} (pid {pid}) did not die after SIGKILL")
    pid_file.unlink(missing_ok=True)
    return node
