"""The metadata records the runtime keeps in a store (runs and executions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
    def from_meta(cls, value: dict[str, Any]) -> ExecutionRecord:
        return cls(**{**value, "status": Status(value["status"])})

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
        meta = asdict(self)
        meta["status"] = str(self.status)
        return meta

    @classmethod
    def from_meta(cls, value: dict[str, Any]) -> RunRecord:
        return cls(**{**value, "status": Status(value["status"])})
