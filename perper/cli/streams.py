"""``perper streams ls|cat``: list streams and print their items."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

from perper import codec
from perper.cli.common import handle_errors, run_async, store_option, with_store
from perper.errors import ConfigError
from perper.runtime.destroy import destroy_stream
from perper.runtime.listing import StreamRow, list_streams
from perper.store import LogStore
from perper.store.index import describe as describe_index

__all__ = ["streams_group", "streams_table"]


@click.group("streams")
def streams_group() -> None:
    """List streams and print their items."""


def streams_table(rows: list[StreamRow]) -> Table:
    """The rich table of ``perper streams ls`` and the end of ``perper run``."""
    indexed = any(row.index for row in rows)
    table = Table("name", "function", "items", "first", "status", *(["index"] if indexed else []))
    for row in rows:
        cells = [row.name, row.function, str(row.items), str(row.first), row.status]
        if indexed:
            cells.append(describe_index(row.index) if row.index else "")
        table.add_row(*cells)
    return table


@streams_group.command("ls")
@store_option
@click.option("--run", "run_name", metavar="NAME", help="Only the streams of this run.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@handle_errors
def streams_ls(store_url: str | None, run_name: str | None, as_json: bool) -> None:
    """One row per stream: name, function, items, first stored seq, status.

    The first stored seq is 0 unless an ephemeral stream was trimmed below it. Indexed
    streams show their indexed fields (the index column; "index" in --json: field ->
    type, or null).
    """

    async def body(store: LogStore) -> list[StreamRow]:
        return await list_streams(store, run=run_name)

    rows = run_async(with_store(store_url, body))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "function": r.function,
                        "items": r.items,
                        "first": r.first,
                        "status": r.status,
                        "index": dict(r.index) if r.index else None,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
    else:
        Console().print(streams_table(rows))


@streams_group.command("cat")
@click.argument("name")
@store_option
@click.option(
    "--start", type=click.IntRange(min=0), default=0, show_default=True, help="First seq to print."
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=None, help="Print at most this many items."
)
@handle_errors
def streams_cat(name: str, store_url: str | None, start: int, limit: int | None) -> None:
    """Print the items of stream NAME, one JSON value per line."""

    async def body(store: LogStore) -> None:
        info = await store.info(name)
        if info.head == 0 and not info.sealed and not await store.streams(prefix=name):
            raise ConfigError(
                f"no stream {name!r} in {store.url}; 'perper streams ls' lists the streams"
            )
        stop = None if limit is None else start + limit
        out = sys.stdout
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        async for _, items in store.read_batches(name, start=start, stop=stop):
            out.write("".join(dumps(codec.to_jsonable(item)) + "\n" for item in items))
        out.flush()

    run_async(with_store(store_url, body))


@streams_group.command("rm")
@click.argument("name")
@store_option
@click.option("--force", is_flag=True, help="Delete it even if a running execution still reads it.")
@handle_errors
def streams_rm(name: str, store_url: str | None, force: bool) -> None:
    """Delete stream NAME: cancel the execution writing it, then delete its items.

    Refused while a running execution reads it, unless --force.
    """

    async def body(store: LogStore) -> None:
        await destroy_stream(store, name, force=force)

    run_async(with_store(store_url, body))
    click.echo(f"deleted stream {name!r}")
