"""The ``perper ui`` command (click); ``perper.cli`` registers it, ``python -m perper.ui``
runs it alone."""

from __future__ import annotations

import click

from perper.errors import PerperError
from perper.store import default_store_url
from perper.ui.server import run_ui


@click.command("ui")
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="The store to show (default $PERPER_STORE or .perper/perper.db).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback exposes the store: the UI has no authentication.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port (0: any free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a browser.")
def ui_command(store_url: str | None, host: str, port: int, open_browser: bool) -> None:
    """Serve a read-only web UI over a store: runs, graphs, executions, streams."""
    try:
        run_ui(
            store_url or default_store_url(),
            host=host,
            port=port,
            open_browser=open_browser,
            echo=lambda line: click.echo(line, err=True),
            warn=lambda line: click.secho(line, err=True, fg="yellow"),
        )
    except PerperError as error:
        click.secho(f"error: {error}", err=True, fg="red")
        raise SystemExit(2) from None
