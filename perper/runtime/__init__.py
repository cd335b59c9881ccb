"""Executing stream functions: the runtime, its settings, records and results."""

from perper.runtime.engine import Failure, RunResult, Runtime
from perper.runtime.ids import Status
from perper.runtime.records import ExecutionRecord, RunRecord
from perper.runtime.settings import Boundary, PlantedBug, RuntimeHooks, RuntimeSettings

__all__ = [
    "Boundary",
    "ExecutionRecord",
    "Failure",
    "PlantedBug",
    "RunRecord",
    "RunResult",
    "Runtime",
    "RuntimeHooks",
    "RuntimeSettings",
    "Status",
]
