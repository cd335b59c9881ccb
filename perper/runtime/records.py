"""The metadata records the runtime keeps in a store (runs and executions)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from perper.app import App, Kind, StreamFunction
from perper.errors import ConfigError

RUNNING = "running"
DONE = "done"
FAILED = "failed"

#: Suffix of the stream that records an execution's effects (now, random, uuid).
EFFECTS_SUFFIX = "#effects"

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
        ConfigError: ``fn`` is not a stream function or action of ``app``.
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
    return f"{prefix}/{fn.name}-{index}"


def is_internal_stream(name: str) -> bool:
    """True for streams the runtime keeps for itself (effects)."""
    return "#" in name


@dataclass(frozen=True, slots=True)
class ExecutionRecord:
    """One started stream function, action or launcher.

    Attributes:
        id: the execution's id, which is also the name of its output stream.
        run: the run it belongs to.
        function: the registered function's name.
        kind: ``stream``, ``action`` or ``launcher``.
        params: the msgpack-encoded parameters it was started with.
        parent: the execution that started it (None for the launcher).
        status: ``running``, ``done`` or ``failed``.
        error: the traceback when failed.
    """

    id: str
    run: str
    function: str
    kind: str
    params: bytes
    parent: str | None = None
    status: str = RUNNING
    error: str | None = None

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> ExecutionRecord:
        return cls(**value)

    def with_status(self, status: str, error: str | None = None) -> ExecutionRecord:
        return replace(self, status=status, error=error)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of an app's launcher.

    Attributes:
        name: the run's name.
        app: the app's name.
        launcher: the launcher's name.
        params: the msgpack-encoded launcher parameters.
        status: ``running``, ``done`` or ``failed``.
    """

    name: str
    app: str
    launcher: str
    params: bytes
    status: str = RUNNING

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> RunRecord:
        return cls(**value)
