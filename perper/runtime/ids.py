"""The id scheme: how runs, executions and streams are named, and their statuses.

Everything that derives or parses a name lives here, so the runtime, replay, the
listing and the simulator agree:

* a run is named by the user (:func:`check_run_name`);
* the launcher's execution is ``{run}/{launcher}``;
* the ``index``-th ``ctx.start`` of the launcher is ``{run}/{function}-{index}``, of any
  other execution ``{execution}/{function}-{index}`` (:func:`child_stream`); an
  execution's id is also the name of its output stream;
* an execution's recorded effects are the internal stream ``{execution}#effects``.
"""

from __future__ import annotations

import re
from enum import StrEnum

from perper.app import App, Kind, StreamFunction
from perper.errors import ConfigError


class Status(StrEnum):
    """The status of a run or an execution (stored as its string value)."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    #: an agent instance (run) that ``agent.destroy()`` ended (perper.runtime.calls)
    DESTROYED = "destroyed"
    #: an execution of a destroyed instance that had not finished
    CANCELLED = "cancelled"


RUNNING = Status.RUNNING
DONE = Status.DONE
FAILED = Status.FAILED

#: Suffix of the stream that records an execution's effects (now, random, uuid).
EFFECTS_SUFFIX = "#effects"

#: The longest execution id (and so output stream name) ``ctx.start`` derives.
MAX_EXECUTION_ID = 1024

#: How deep ``ctx.start`` may nest below the launcher (the launcher's children are 1).
MAX_START_DEPTH = 64

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_run_name(run: str) -> str:
    """Return ``run`` if it is a valid run name.

    Raises:
        ConfigError: it is not.
    """
    if not _RUN_NAME.match(run):
        raise ConfigError(
            f"run name {run!r} is not valid: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return run


def child_stream(app: App, caller: str, fn: object, prefix: str, index: int) -> str:
    """The id (and stream name) of the ``index``-th start call made by ``caller``:
    ``{prefix}/{function}-{index}``, where the prefix is the run for the launcher and the
    caller's own id below it. Deterministic, so a re-run re-attaches.

    Raises:
        ConfigError: ``fn`` is not a stream function or action of ``app``, or the id
            would nest deeper than :data:`MAX_START_DEPTH` or be longer than
            :data:`MAX_EXECUTION_ID` characters (a runaway ``ctx.start`` recursion).
    """
    if not isinstance(fn, StreamFunction) or fn.app is not app:
        raise ConfigError(
            f"{caller!r} started {fn!r}: ctx.start and ctx.declare take a function "
            f"decorated with @app.stream or @app.action of app {app.name!r}"
        )
    if fn.kind == Kind.LAUNCHER:
        raise ConfigError(f"{caller!r} cannot start the launcher {fn.name!r}")
    if fn.kind in (Kind.CALL, Kind.STOP):
        raise ConfigError(
            f"{caller!r} started {fn.name!r}, an @app.{fn.kind} function: call it with "
            f"await ctx.call({fn.name}, ...) instead"
        )
    name = f"{prefix}/{fn.name}-{index}"
    depth = name.count("/")
    if depth > MAX_START_DEPTH:
        raise ConfigError(
            f"{caller!r} ({prefix!r}) started {fn.name!r} {depth} levels below the "
            f"launcher; ctx.start nests at most {MAX_START_DEPTH} deep: is the recursion "
            "meant to end? Start the functions from the launcher, or pass a depth "
            "parameter and stop at a bound"
        )
    if len(name) > MAX_EXECUTION_ID:
        raise ConfigError(
            f"{caller!r} started {fn.name!r} as {name[:60]!r}... ({len(name)} characters); "
            f"execution ids are at most {MAX_EXECUTION_ID} characters: use shorter "
            "function names or nest ctx.start less deeply"
        )
    return name


def is_internal_stream(name: str) -> bool:
    """True for streams the runtime keeps for itself (effects)."""
    return "#" in name


def start_order(name: str) -> list[tuple[int, str]]:
    """Sort key putting ``run/f-2`` before ``run/g-10``: by call index, then by name."""
    key = []
    for part in name.split("/"):
        head, _, index = part.rpartition("-")
        key.append((int(index), head) if head and index.isdigit() else (-1, part))
    return key
