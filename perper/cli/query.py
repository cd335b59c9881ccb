"""``perper query NAME "CONDITION"``: the items of an indexed stream that match a SQL
condition over its indexed fields (:meth:`perper.store.base.LogStore.query`)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from perper import codec
from perper.cli.common import handle_errors, run_async, store_option, with_store
from perper.errors import ConfigError
from perper.store import LogStore

__all__ = ["parse_query_param", "query_command"]


def parse_query_param(text: str) -> Any:
    """A ``--param`` value: its JSON value if it parses as JSON (``4242``, ``2.5``,
    ``true``, ``null``, ``"4242"``), else the text itself as a str (``/home``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@click.command("query")
@click.argument("name")
@click.argument("condition")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="V",
    help="A value for the next '?' of CONDITION (repeat, in order). Parsed as JSON when it "
    "parses (4242 is an int, 2.5 a float, true a bool, null NULL, '\"7\"' the str 7), "
    "else taken as a str (/home).",
)
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most N items.")
@click.option(
    "--order-by",
    default="seq",
    show_default=True,
    metavar="FIELDS",
    help="seq or indexed fields, each optionally followed by DESC ('amount DESC').",
)
@store_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document {stream, condition, params, rows: [{seq, item}]} "
    "instead of one JSON line per item.",
)
@handle_errors
def query_command(
    name: str,
    condition: str,
    params: tuple[str, ...],
    limit: int | None,
    order_by: str,
    store_url: str | None,
    as_json: bool,
) -> None:
    """Print the items of the indexed stream NAME matching CONDITION, a SQL condition over
    seq and its indexed fields with '?' for each --param, such as "user = ?"; one JSON
    line {"seq": N, "item": ...} per item, in seq order unless --order-by says otherwise.

    Exit 2 if NAME is not an indexed stream, or CONDITION names a field that is not
    indexed, is not valid SQL or is unsafe (the message names the indexed fields).
    """
    values = [parse_query_param(text) for text in params]

    async def body(store: LogStore) -> None:
        if await store.index_of(name) is None and not await store.streams(prefix=name):
            raise ConfigError(
                f"no stream {name!r} in {store.url}; 'perper streams ls' lists the streams "
                "(indexed ones show their fields)"
            )
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        rows = store.query(name, condition, values, order_by=order_by, limit=limit)
        if as_json:
            found = [{"seq": seq, "item": codec.to_jsonable(item)} async for seq, item in rows]
            document = {"stream": name, "condition": condition, "params": values, "rows": found}
            click.echo(json.dumps(document, ensure_ascii=False, indent=2))
            return
        out = sys.stdout
        async for seq, item in rows:
            out.write(dumps({"seq": seq, "item": codec.to_jsonable(item)}) + "\n")
        out.flush()

    run_async(with_store(store_url, body))
