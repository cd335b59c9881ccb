"""``perper agents ls``: list agent instances (runs) with their calls."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from perper.cli.common import handle_errors, run_async, store_option, with_store
from perper.runtime.calls import AgentRow, list_agents
from perper.store import LogStore

__all__ = ["agents_group"]


@click.group("agents")
def agents_group() -> None:
    """List agent instances."""


@agents_group.command("ls")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@handle_errors
def agents_ls(store_url: str | None, as_json: bool) -> None:
    """One row per agent instance: instance, app, status, parent, calls made/served."""

    async def body(store: LogStore) -> list[AgentRow]:
        return await list_agents(store)

    rows = run_async(with_store(store_url, body))
    if as_json:
        fields = ("instance", "app", "status", "parent", "calls_made", "calls_served")
        click.echo(json.dumps([{f: getattr(r, f) for f in fields} for r in rows], indent=2))
        return
    table = Table("instance", "app", "status", "parent", "calls made", "calls served")
    for r in rows:
        table.add_row(r.instance, r.app, r.status, r.parent, str(r.calls_made), str(r.calls_served))
    Console().print(table)
