"""The metadata records the runtime keeps in a store (runs and executions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perper.errors import FormatError
from perper.runtime.ids import (
    DONE,
    EFFECTS_SUFFIX,
    FAILED,
    RUNNING,
    Status,
    check_run_name,
    child_stream,
    is_internal_stream,
)

# The id scheme and statuses live in perper.runtime.ids; these names stay importable
# from here.
__all__ = [
    "DONE",
    "EFFECTS_SUFFIX",
    "FAILED",
    "RUNNING",
    "ExecutionRecord",
    "RunRecord",
    "Status",
    "check_run_name",
    "child_stream",
    "is_internal_stream",
]


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
    status: Status = RUNNING
    error: str | None = None

    def to_meta(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field, and calls write one per call.
        return {
            "id": self.id,
            "run": self.run,
            "function": self.function,
            "kind": self.kind,
            "params": self.params,
            "parent": self.parent,
            "status": str(self.status),
            "error": self.error,
        }

    @classmethod
    def from_meta(cls, value: Any, key: str | None = None) -> ExecutionRecord:
        """The record stored as ``value`` (the ``executions`` row ``key``, which names
        it in the error); :class:`FormatError` if it is not of the shape perper writes."""
        # The shape every to_meta writes (all eight fields, well typed) is checked and
        # built without a keyword dict or an enum lookup: the work loop decodes a record
        # per claim. Anything else takes the general path, which names what is wrong.
        if type(value) is dict and len(value) == 8:
            get = value.get
            stored = get("status")
            status = _STATUSES.get(stored) if type(stored) is str else None
            id_, run, function, kind = get("id"), get("run"), get("function"), get("kind")
            params, parent, error = get("params"), get("parent"), get("error")
            if (
                status is not None
                and type(id_) is str
                and type(run) is str
                and type(function) is str
                and type(kind) is str
                and type(params) is bytes
                and (parent is None or type(parent) is str)
                and (error is None or type(error) is str)
                and "parent" in value
                and "error" in value
            ):
                return cls(id_, run, function, kind, params, parent, status, error)
        try:
            record = cls(**{**value, "status": Status(value["status"])})
        except (TypeError, KeyError, ValueError) as error:
            raise _corrupt_row("executions", key, value, error) from None
        if not (
            type(record.id) is str
            and type(record.run) is str
            and type(record.function) is str
            and type(record.kind) is str
            and type(record.params) is bytes
            and (record.parent is None or type(record.parent) is str)
            and (record.error is None or type(record.error) is str)
        ):
            raise _corrupt_row("executions", key, value, "a field of the wrong type")
        return record

    def with_status(self, status: Status, error: str | None = None) -> ExecutionRecord:
        return ExecutionRecord(
            self.id, self.run, self.function, self.kind, self.params, self.parent, status, error
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of an app's launcher.

    Attributes:
        name: the run's name.
        app: the app's name.
        launcher: the launcher's name.
        params: the msgpack-encoded launcher parameters.
        status: ``running``, ``done`` or ``failed``.
        started: when the run was first started, by the runtime's clock (seconds since
            the epoch; None in records written before perper recorded it). Shown only:
            nothing the functions compute depends on it.
    """

    name: str
    app: str
    launcher: str
    params: bytes
    status: Status = RUNNING
    started: float | None = None

    def to_meta(self) -> dict[str, Any]:
        # Not dataclasses.asdict (a deep copy): the work loop writes one as a run ends.
        return {
            "name": self.name,
            "app": self.app,
            "launcher": self.launcher,
            "params": self.params,
            "status": str(self.status),
            "started": self.started,
        }

    @classmethod
    def from_meta(cls, value: Any, key: str | None = None) -> RunRecord:
        """The record stored as ``value`` (the ``runs`` row ``key``, which names it in
        the error); :class:`FormatError` if it is not of the shape perper writes."""
        try:
            record = cls(**{**value, "status": Status(value["status"])})
        except (TypeError, KeyError, ValueError) as error:
            raise _corrupt_row("runs", key, value, error) from None
        if not (
            type(record.name) is str
            and type(record.app) is str
            and type(record.launcher) is str
            and type(record.params) is bytes
            and (record.started is None or type(record.started) in (int, float))
        ):
            raise _corrupt_row("runs", key, value, "a field of the wrong type")
        return record


#: Each status by its stored string (a dict lookup; ``Status(value)`` is an enum call).
_STATUSES: dict[str, Status] = {str(status): status for status in Status}


def _corrupt_row(table: str, key: str | None, value: Any, error: object) -> FormatError:
    if key is None and isinstance(value, dict):
        key = value.get("id", value.get("name"))
    where = f"the {table} row {key!r}" if key is not None else f"a {table} row"
    return FormatError(f"{where} is corrupt ({error}): {value!r:.200}")
