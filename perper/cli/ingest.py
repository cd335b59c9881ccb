"""``perper ingest RUN/NAME [FILE.jsonl | -]``: JSON lines into a run's ingest stream."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from perper.cli.common import fail, handle_errors, run_async, store_option, with_store
from perper.ingest import IngestResult, Producer, ingest_lines
from perper.store import LogStore

__all__ = ["ingest_command"]


@click.command("ingest")
@click.argument("stream", metavar="RUN/NAME")
@click.argument("source", metavar="[FILE.jsonl | -]", default="-")
@store_option
@click.option(
    "--key",
    "key_field",
    metavar="FIELD",
    help="Take each item's idempotency key from this field (default: the source's name "
    "and line number).",
)
@click.option(
    "--source",
    "source_name",
    metavar="NAME",
    help="The source's name in the default keys (default: the file's absolute path, or "
    "'stdin'). Give one when piping, so a re-run resumes.",
)
@click.option("--seal", is_flag=True, help="Seal the stream afterwards: readers' loops end.")
@click.option("--skip-bad", is_flag=True, help="Skip lines that are not JSON items.")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Lines per durable write.",
)
@handle_errors
def ingest_command(
    stream: str,
    source: str,
    store_url: str | None,
    key_field: str | None,
    source_name: str | None,
    seal: bool,
    skip_bad: bool,
    batch: int,
) -> None:
    """Append one item per JSON line of FILE.jsonl (or stdin) to the stream RUN/NAME,
    what ``ctx.ingest("NAME")`` reads in run RUN.

    Every line is sent once, with a key: running the same command again after a crash or
    Ctrl-C appends nothing twice and resumes. A line that is not JSON stops it with an
    error naming the line (nothing after it is sent) unless --skip-bad is given.
    """
    if "/" not in stream.strip("/"):
        fail(f"stream {stream!r}: name it RUN/NAME, e.g. 'shop/clicks' for ctx.ingest('clicks')")
    if source == "-":
        handle: BinaryIO = sys.stdin.buffer
        name, total = source_name or "stdin", None
    else:
        path = Path(source)
        if not path.is_file():
            fail(f"{source!r} is not a file; give a JSON-lines file or '-' for stdin")
        handle = path.open("rb")
        name, total = source_name or str(path.resolve()), os.path.getsize(path)
    console = Console(stderr=True)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[items]:,} items, {task.fields[rate]} items/s"),
    ]
    columns += [TimeRemainingColumn()] if total is not None else [TimeElapsedColumn()]
    if total is not None:
        columns.insert(2, TaskProgressColumn())
    bar = Progress(*columns, console=console, disable=not console.is_terminal, transient=False)

    async def body(store: LogStore) -> IngestResult:
        task = bar.add_task(f"ingest {stream}", total=total, items=0, rate="-")

        def progress(read: int, sent: int) -> None:
            elapsed = bar.tasks[0].elapsed or 0.0
            rate = f"{sent / elapsed:,.0f}" if elapsed > 0 else "-"
            bar.update(task, completed=read, items=sent, rate=rate)

        async with Producer(store, stream, max_batch=batch) as producer:
            result = await ingest_lines(
                producer,
                handle,
                source=name,
                key_field=key_field,
                skip_bad=skip_bad,
                batch=batch,
                progress=progress,
            )
            if seal:
                await producer.seal()
        return result

    try:
        with bar:
            result = run_async(with_store(store_url, body, create=True))
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    for number, reason in result.skipped:
        click.echo(f"skipped {name} line {number}: {reason}", err=True)
    sealed = ", sealed" if seal else ""
    click.echo(
        f"{stream}: {result.sent:,} items sent from {result.lines:,} lines "
        f"({len(result.skipped)} skipped); the stream holds {result.head:,} items{sealed}"
    )
