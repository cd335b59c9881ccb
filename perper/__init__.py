"""Perper: stream processing over durable, ordered, replayable logs.

Stream functions are async generators whose every ``yield`` appends one item to a
durable log (SQLite locally, Apache Ignite when distributed). See ``README.md``.
"""

from perper.agents import AgentRef, AgentState
from perper.app import App, StreamFunction, load_app
from perper.batch import Batch
from perper.codec import register
from perper.context import Context
from perper.errors import (
    AgentDestroyedError,
    CallFailedError,
    ConfigError,
    ConflictError,
    EncodeError,
    ExecutionFailedError,
    FencedError,
    FormatError,
    GapError,
    NondeterminismError,
    PerperError,
    ReplayError,
    SealedError,
    StoreError,
    StoreUnavailableError,
    TrimmedError,
)
from perper.ingest import Producer
from perper.runtime import RunResult, Runtime
from perper.runtime.calls import call
from perper.store import LogStore, open_store
from perper.streamref import StreamRef

__version__ = "0.1.0"

__all__ = [
    "AgentDestroyedError",
    "AgentRef",
    "AgentState",
    "App",
    "Batch",
    "CallFailedError",
    "ConfigError",
    "ConflictError",
    "Context",
    "EncodeError",
    "ExecutionFailedError",
    "FencedError",
    "FormatError",
    "GapError",
    "LogStore",
    "NondeterminismError",
    "PerperError",
    "Producer",
    "ReplayError",
    "RunResult",
    "Runtime",
    "SealedError",
    "StoreError",
    "StoreUnavailableError",
    "StreamFunction",
    "StreamRef",
    "TrimmedError",
    "call",
    "load_app",
    "open_store",
    "register",
]
