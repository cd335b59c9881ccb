"""Executing stream functions: the runtime, its records and results."""

from perper.runtime.engine import Failure, RunResult, Runtime
from perper.runtime.records import ExecutionRecord, RunRecord

__all__ = ["ExecutionRecord", "Failure", "RunRecord", "RunResult", "Runtime"]
