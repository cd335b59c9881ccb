"""``perper replay``: re-run today's code over a recorded log and report divergences.

Exit codes: 0 every replayed execution reproduces its log; 1 a divergence; 2 the log
cannot be replayed (a function missing from the app, parameters that no longer fit, a
file that is not a perper log, bad options) — the message says why.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from perper.app import load_app
from perper.cli.common import fail, mask_url
from perper.errors import PerperError
from perper.replay import (
    DIVERGED,
    IDENTICAL,
    STOPPED,
    UNREPLAYABLE,
    GraphReplayResults,
    ReplayResult,
    ReplayResults,
    replay,
    replay_graph,
)

#: Logs with at least this many recorded items get a progress bar (on a terminal).
PROGRESS_FROM = 100_000

_STYLES = {IDENTICAL: "green", DIVERGED: "bold red", UNREPLAYABLE: "yellow", STOPPED: "cyan"}


@click.command("replay")
@click.argument("log", metavar="LOG.sqlite")
@click.argument("app_file", metavar="APP.py", type=click.Path(dir_okay=False))
@click.option("--function", metavar="NAME", help="Replay only the executions of this function.")
@click.option("--execution", metavar="ID", help="Replay only this execution.")
@click.option("--run", "run_name", metavar="NAME", help="Replay only this run.")
@click.option(
    "--until",
    type=click.IntRange(min=0),
    metavar="SEQ",
    help="Stop just before the function yields SEQ.",
)
@click.option(
    "--pdb",
    "debug",
    is_flag=True,
    help="Open pdb there (with --until), else at the first divergence.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (for CI).")
@click.option(
    "--graph",
    is_flag=True,
    help="Re-run whole runs from their ingest streams and compare every stream.",
)
@click.option(
    "--no-freeze-clock",
    is_flag=True,
    help="Let direct time.time()/datetime.now() calls see the real clock.",
)
@click.option(
    "--html",
    "html_path",
    metavar="REPORT.html",
    type=click.Path(dir_okay=False),
    help="Also write the results as a self-contained HTML page (expected/actual, diff).",
)
def replay_command(
    log: str,
    app_file: str,
    function: str | None,
    execution: str | None,
    run_name: str | None,
    until: int | None,
    debug: bool,
    as_json: bool,
    graph: bool,
    no_freeze_clock: bool,
    html_path: str | None,
) -> None:
    """Replay the executions recorded in LOG with today's code of APP.py.

    LOG is a SQLite file (e.g. made by 'perper export') or a store URL; it is opened
    read-only. Each execution runs over its recorded inputs, parameters and effects and
    its output is compared item by item with the recorded one.

    Exit status: 0 all reproduce the log, 1 a divergence, 2 the log cannot be replayed.
    """
    if graph and (function or execution or until is not None or debug):
        fail(
            "--graph replays whole runs: it takes --run, not --function, --execution, "
            "--until or --pdb"
        )
    if debug and as_json:
        fail("--pdb is interactive and --json is for machines: use one of them")
    try:
        app = load_app(app_file)
        err = Console(stderr=True, soft_wrap=True)
        if not as_json:
            err.print(Text(f"replaying {mask_url(log)} with {app_file} (app {app.name!r})"))
        if graph:
            graph_results = replay_graph(log, app, run=run_name, freeze_clock=not no_freeze_clock)
            _write_html(graph_results, html_path, err)
            if as_json:
                click.echo(json.dumps(graph_results.to_json(), indent=2))
            else:
                _print_graph(graph_results)
            sys.exit(graph_results.exit_code)
        with _progress(enabled=not (as_json or debug) and err.is_terminal, console=err) as bar:
            results = replay(
                log,
                app,
                function=function,
                execution=execution,
                run=run_name,
                until=until,
                debug=debug,
                freeze_clock=not no_freeze_clock,
                progress=bar,
            )
        _write_html(results, html_path, err)
    except PerperError as error:
        fail(str(error))
    if as_json:
        click.echo(json.dumps(results.to_json(), indent=2))
    else:
        _print_results(results)
    sys.exit(results.exit_code)


def _write_html(
    results: ReplayResults | GraphReplayResults, path: str | None, err: Console
) -> None:
    if path is None:
        return
    from perper.replay.html import write_replay_html

    written = write_replay_html(results, path)
    err.print(Text(f"html report: {written}"))


class _Bar:
    """The progress callback: a bar per execution long enough to need one."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}

    def __call__(self, execution: str, compared: int, recorded: int) -> None:
        if recorded < PROGRESS_FROM:
            return
        task = self.tasks.get(execution)
        if task is None:
            task = self.tasks[execution] = self.progress.add_task(execution, total=recorded)
        self.progress.update(task, completed=compared)


@contextmanager
def _progress(*, enabled: bool, console: Console) -> Iterator[_Bar | None]:
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield _Bar(progress)


def _print_results(results: ReplayResults) -> None:
    out = Console(soft_wrap=True)
    table = Table("execution", "function", "items compared", "result")
    for result in results:
        table.add_row(
            Text(result.execution),
            Text(result.function),
            str(result.items_compared),
            Text(_cell(result), style=_STYLES[result.outcome]),
        )
    out.print(table)
    for result in results:
        if result.outcome == DIVERGED and result.divergence is not None:
            out.print(Text(f"\n{result.execution} diverged:", style="bold red"))
            out.print(Text("  " + result.divergence.describe("    ")))
        elif result.outcome == UNREPLAYABLE:
            out.print(Text(f"\n{result.execution} cannot be replayed:", style="bold yellow"))
            out.print(Text(f"  {result.reason}"))
        for note in result.notes:
            out.print(Text(f"note: {result.execution}: {note}", style="dim"))
    for note in results.notes:
        out.print(Text(f"note: {note}", style="dim"))
    counts = {o: sum(1 for r in results if r.outcome == o) for o in _STYLES}
    verdict = {
        0: "the code reproduces the log",
        1: "the code diverges from the log",
        2: "the log cannot be replayed",
    }[results.exit_code]
    out.print(
        Text(
            f"\n{len(results)} execution{'' if len(results) == 1 else 's'}: {counts[IDENTICAL]} identical, {counts[DIVERGED]} "
            f"diverged, {counts[UNREPLAYABLE]} cannot be replayed"
            + (f", {counts[STOPPED]} stopped" if counts[STOPPED] else "")
            + f" — {verdict}",
            style=_STYLES[IDENTICAL] if results.exit_code == 0 else "bold",
        )
    )


def _cell(result: ReplayResult) -> str:
    if result.outcome == UNREPLAYABLE:
        return "cannot replay"
    if result.outcome == STOPPED:
        return f"stopped before {result.stopped_before}"
    if result.divergence is not None:
        return f"diverged ({result.divergence.kind}) at {result.divergence.seq}"
    return result.outcome


def _print_graph(results: GraphReplayResults) -> None:
    out = Console(soft_wrap=True)
    for run in results:
        if run.outcome == UNREPLAYABLE:
            out.print(Text(f"run {run.run} cannot be replayed: {run.reason}", style="yellow"))
            continue
        table = Table(
            "stream", "function", "recorded", "replayed", "result", title=f"run {run.run}"
        )
        for stream in run.streams:
            result = str(stream.outcome)
            if stream.divergence is not None:
                result += f" ({stream.divergence.kind}) at {stream.divergence.seq}"
            table.add_row(
                Text(stream.stream),
                Text(stream.function),
                str(stream.recorded_items),
                str(stream.replayed_items),
                Text(result, style=_STYLES[stream.outcome]),
            )
        out.print(table)
        for stream in run.streams:
            if stream.divergence is not None:
                out.print(Text(f"\n{stream.stream} diverged:", style="bold red"))
                out.print(Text("  " + stream.divergence.describe("    ")))
        for failure in run.failures:
            out.print(
                Text(
                    f"\n{failure.execution} ({failure.function}) failed in the replay:",
                    style="bold red",
                )
            )
            out.print(Text("\n".join("  " + line for line in failure.error.splitlines())))
        for note in run.notes:
            out.print(Text(f"note: {note}", style="dim"))
    for note in results.notes:
        out.print(Text(f"note: {note}", style="dim"))
    verdict = {
        0: "every stream reproduces the log",
        1: "the run diverges from the log",
        2: "the log cannot be replayed",
    }[results.exit_code]
    out.print(Text(verdict, style=_STYLES[IDENTICAL] if results.exit_code == 0 else "bold"))
