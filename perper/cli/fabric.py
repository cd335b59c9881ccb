"""``perper fabric ...``: start, stop and inspect local Apache Ignite nodes.

The group is attached to the main CLI as ``perper fabric``; the work is
:mod:`perper.fabric`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NoReturn

import click

from perper import fabric
from perper.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail

__all__ = ["fabric_group"]

fabric_group = click.Group(
    "fabric",
    help=(
        "Local Apache Ignite nodes for development and tests (loopback only). See docs/fabric.md."
    ),
)

_port_option = click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=fabric.DEFAULT_PORT,
    show_default=True,
    help="Thin-client port of the first node (node i uses PORT+i).",
)
_work_dir_option = click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for pid files, logs and data [default: $PERPER_HOME/fabric/PORT, else ~/.local/share/perper/fabric/PORT].",
)


def _fail(error: fabric.FabricError) -> NoReturn:
    """Print the error's one-line message and exit with status 1."""
    fail(error.message.splitlines()[0] if error.message else "fabric error", EXIT_FAILED)


@fabric_group.command("start")
@_port_option
@_work_dir_option
@click.option(
    "--no-persistence",
    is_flag=True,
    default=False,
    help="Pure in-memory nodes (data is lost when they stop).",
)
@click.option(
    "--nodes",
    type=click.IntRange(1, fabric.DISCOVERY_RANGE),
    default=1,
    show_default=True,
    help="Number of server nodes.",
)
@click.option(
    "--discovery-port",
    type=click.IntRange(1, 65535),
    default=fabric.DEFAULT_DISCOVERY_PORT,
    show_default=True,
    help="First port of the discovery range (10 ports); separate clusters need separate ranges.",
)
@click.option(
    "--communication-port",
    type=click.IntRange(1, 65535),
    default=fabric.DEFAULT_COMMUNICATION_PORT,
    show_default=True,
    help="Communication port of the first node (node i uses PORT+i).",
)
@click.option(
    "--backups",
    type=click.IntRange(0, 9),
    default=None,
    help="Backups of the perper caches [default: 0 for one node, 1 for more].",
)
@click.option(
    "--memory-mb",
    type=click.IntRange(32, None),
    default=fabric.DEFAULT_MEMORY_MB,
    show_default=True,
    help="Maximum size of each node's data region, in MiB.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=180.0,
    show_default=True,
    help="Seconds to wait for the cluster to be ACTIVE.",
)
@click.option(
    "--auth",
    is_flag=True,
    help="Thin clients must log in (needs persistence). See --user.",
)
@click.option(
    "--user",
    metavar="NAME",
    help=(
        "With --auth: a user to create, its password from $PERPER_FABRIC_PASSWORD "
        "(never on the command line). Without it only Ignite's default user ignite/ignite exists."
    ),
)
@click.option(
    "--tls-keystore",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help=(
        "A JKS or PKCS#12 keystore (keytool -genkeypair): the thin-client port speaks TLS only; "
        "its password from $PERPER_FABRIC_KEYSTORE_PASSWORD."
    ),
)
def start_command(
    port: int,
    work_dir: Path | None,
    no_persistence: bool,
    nodes: int,
    discovery_port: int,
    communication_port: int,
    backups: int | None,
    memory_mb: int,
    timeout: float,
    auth: bool,
    user: str | None,
    tls_keystore: Path | None,
) -> None:
    """Start local Ignite server nodes and wait until the cluster is ACTIVE.

    Clients of a node started with --auth --user bob connect with
    ignite://bob:PASSWORD@127.0.0.1:PORT; with --tls-keystore they add ?tls=1 (and
    tls_ca=CERT.pem to check the node's certificate).
    """
    started = time.monotonic()
    password = os.environ.get(fabric.PASSWORD_ENV)
    if user is not None and not password:
        fail(f"--user {user} needs its password in ${fabric.PASSWORD_ENV}", EXIT_BAD_INPUT)
    try:
        result = fabric.start(
            port=port,
            work_dir=work_dir,
            persistence=not no_persistence,
            nodes=nodes,
            discovery_port=discovery_port,
            communication_port=communication_port,
            timeout=timeout,
            backups=backups,
            memory_mb=memory_mb,
            auth=auth,
            username=user,
            password=password,
            tls_keystore=tls_keystore,
            tls_keystore_password=os.environ.get(fabric.KEYSTORE_PASSWORD_ENV),
        )
    except fabric.FabricError as error:
        _fail(error)
    click.echo(str(result))
    click.echo(f"ready in {time.monotonic() - started:.1f}s")


@fabric_group.command("stop")
@_port_option
@_work_dir_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.0),
    default=60.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before SIGKILL.",
)
def stop_command(port: int, work_dir: Path | None, timeout: float) -> None:
    """Stop every node of a work directory (idempotent)."""
    try:
        stopped = fabric.stop(port=port, work_dir=work_dir, timeout=timeout)
    except fabric.FabricError as error:
        _fail(error)
    click.echo(f"stopped {stopped} node(s)" if stopped else "no node was running")


@fabric_group.command("status")
@_port_option
@_work_dir_option
@click.option("--tls", is_flag=True, help="The node's thin-client port speaks TLS.")
def status_command(port: int, work_dir: Path | None, tls: bool) -> None:
    """Show the nodes of a work directory and the cluster state.

    A node with authentication is asked as $PERPER_FABRIC_USER ($PERPER_FABRIC_PASSWORD).
    """
    try:
        result = fabric.status(
            port=port, work_dir=work_dir, login=fabric.ClientLogin.from_env(tls=tls)
        )
    except fabric.FabricError as error:
        _fail(error)
    click.echo(str(result))
