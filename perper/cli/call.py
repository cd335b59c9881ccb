"""``perper call RUN FUNCTION``: call a function of a running agent instance."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os

import click

from perper import codec
from perper.cli.common import fail, handle_errors, run_async, store_option, with_store
from perper.errors import CallFailedError
from perper.runtime.calls import call
from perper.store import LogStore

__all__ = ["call_command"]


@click.command("call")
@click.argument("run_name", metavar="RUN")
@click.argument("function", metavar="FUNCTION")
@click.option(
    "--param",
    "params",
    metavar="KEY=VALUE",
    multiple=True,
    help="A keyword argument (repeatable); values are JSON or strings.",
)
@click.option("--key", metavar="K", help="Idempotency key: retrying returns the first result.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the result.")
@store_option
@handle_errors
def call_command(
    run_name: str,
    function: str,
    params: tuple[str, ...],
    key: str | None,
    timeout: float | None,
    store_url: str | None,
) -> None:
    """Call FUNCTION of agent instance RUN and print its JSON result.

    A `perper worker` serving the run's app executes the call. With --key the request
    is idempotent; the call is recorded as an input of the run.
    """
    kwargs = {}
    for param in params:
        name, sep, raw = param.partition("=")
        if not sep or not name:
            fail(f"--param {param!r} must look like key=value")
        try:
            kwargs[name] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[name] = raw

    async def body(store: LogStore) -> object:
        note = asyncio.ensure_future(_say_who_runs_it(store, run_name))
        try:
            return await call(
                store, run_name, function, key=key or os.urandom(8).hex(), timeout=timeout, **kwargs
            )
        finally:
            note.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await note

    try:
        result = run_async(with_store(store_url, body))
    except CallFailedError as error:
        fail(str(error), code=1)
    except TimeoutError as error:
        fail(f"{error}; {_WHO_RUNS_IT.format(run=run_name)}", code=1)
    click.echo(json.dumps(codec.to_jsonable(result)))


#: Seconds ``perper call`` waits for a result before it says who must run the call.
WAITING_NOTE_AFTER = 5.0

_WHO_RUNS_IT = (
    "a 'perper worker APP.py' serving the app of run {run!r} on this store runs it: is one running?"
)


async def _say_who_runs_it(store: LogStore, run: str) -> None:
    """After :data:`WAITING_NOTE_AFTER` seconds without a result, say once on stderr that
    a worker runs the call (a call without one waits forever, silently)."""
    await asyncio.sleep(WAITING_NOTE_AFTER)
    click.echo(f"waiting for the result: {_WHO_RUNS_IT.format(run=run)}", err=True)
