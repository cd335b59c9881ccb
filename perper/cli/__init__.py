"""The ``perper`` command: one module per command group, attached here.

* :mod:`perper.cli.run` — ``perper run``, ``perper worker``
* :mod:`perper.cli.streams` — ``perper streams ls|cat``
* :mod:`perper.cli.replay` — ``perper replay``
* :mod:`perper.cli.mirror` — ``perper export``, ``perper mirror``
* :mod:`perper.cli.fabric` — ``perper fabric start|stop|status``
* :mod:`perper.cli.call` — ``perper call``; :mod:`perper.cli.agents` — ``perper agents ls``
* :mod:`perper.cli.ingest` — ``perper ingest RUN/NAME [FILE.jsonl | -]``
* :mod:`perper.cli.ui` — ``perper ui``
* :mod:`perper.cli.query` — ``perper query NAME "CONDITION"`` (indexed streams)
* :mod:`perper.cli.common` — what they share: exit codes, ``fail``, ``--store``, masking

A new command group (``ingest``, ``call``, ``agents``, ``query``, ``ui``, ``streams rm``
as a command of :mod:`perper.cli.streams`) is a new module here with one
``main.add_command`` line below, using :mod:`perper.cli.common` for failing, ``--store``
(``with_store(url, body, create=...)``: only commands that write may create a log) and
masking. The modules parse, call a library function and print; the work lives below the
CLI. No ``except ImportError`` around a command: a broken one must fail loudly.

Exit codes: 0 success; 1 a run failed (an execution raised) or a replay diverged; 2 bad
input (usage, app, parameters, store URL or file) — the message says what to fix.
"""

from __future__ import annotations

import logging

import click

from perper.cli.agents import agents_group
from perper.cli.call import call_command
from perper.cli.fabric import fabric_group
from perper.cli.ingest import ingest_command
from perper.cli.mirror import export_command, mirror_command
from perper.cli.query import query_command
from perper.cli.replay import replay_command
from perper.cli.run import run_command, worker_command
from perper.cli.streams import streams_group
from perper.cli.ui import ui_command
from perper.params import parse_params

__all__ = ["main", "parse_params"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(None, "--version", "-V", package_name="perper")
def main() -> None:
    """Perper: stream processing over durable, ordered, replayable logs."""
    # pyignite logs every failed connection attempt with a traceback; IgniteStore retries
    # and reports what matters as one StoreUnavailableError.
    logging.getLogger("pyignite").setLevel(logging.CRITICAL)


main.add_command(run_command, "run")
main.add_command(worker_command, "worker")
main.add_command(streams_group, "streams")
main.add_command(export_command, "export")
main.add_command(mirror_command, "mirror")
main.add_command(replay_command, "replay")
main.add_command(fabric_group, "fabric")
main.add_command(call_command, "call")
main.add_command(agents_group, "agents")
main.add_command(ingest_command, "ingest")
main.add_command(ui_command, "ui")
main.add_command(query_command, "query")
