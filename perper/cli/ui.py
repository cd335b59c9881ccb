"""``perper ui``: serve the read-only web UI over a store (the work is in perper.ui)."""

from __future__ import annotations

import click

from perper.cli.common import EXIT_BAD_INPUT, fail, store_option, store_url_or_default
from perper.errors import PerperError


@click.command("ui")
@store_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback shows the store to the network: "
    "the UI has no authentication.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a browser.")
def ui_command(store_url: str | None, host: str, port: int, open_browser: bool) -> None:
    """Serve a read-only web UI over a store: runs, graphs, executions, streams.

    Listens on 127.0.0.1 unless --host says otherwise; Ctrl-C stops it.
    """
    try:
        from perper.ui import run_ui
    except ImportError as error:
        fail(f"perper ui needs its extra ({error.name} is missing): pip install 'perper[ui]'")
    try:
        run_ui(
            store_url_or_default(store_url),
            host=host,
            port=port,
            open_browser=open_browser,
            echo=lambda line: click.echo(line, err=True),
            warn=lambda line: click.secho(line, err=True, fg="yellow"),
        )
    except PerperError as error:
        fail(str(error), EXIT_BAD_INPUT)
