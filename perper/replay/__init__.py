"""Replay: re-run today's code over recorded logs and pinpoint where it diverges.

    results = perper.replay.replay("prod.db", app)
    results.raise_on_failure()

:func:`replay` runs each recorded execution alone over its recorded inputs, parameters
and effects and compares its output item by item with the recording;
:func:`replay_graph` re-runs whole runs from their ingest streams and launcher
parameters and compares every stream. Both open the log read-only and return values
(frozen dataclasses). See ``docs/replay.md``.
"""

from perper.replay.engine import Progress, replay, replay_async
from perper.replay.graph import replay_graph, replay_graph_async
from perper.replay.log import open_log
from perper.replay.results import (
    DIVERGED,
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_UNREPLAYABLE,
    IDENTICAL,
    STOPPED,
    UNREPLAYABLE,
    Divergence,
    DivergenceKind,
    GraphReplayResults,
    Outcome,
    ReplayDivergedError,
    ReplayResult,
    ReplayResults,
    RunFailure,
    RunReplayResult,
    StreamResult,
)

__all__ = [
    "DIVERGED",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "EXIT_UNREPLAYABLE",
    "IDENTICAL",
    "STOPPED",
    "UNREPLAYABLE",
    "Divergence",
    "DivergenceKind",
    "GraphReplayResults",
    "Outcome",
    "Progress",
    "ReplayDivergedError",
    "ReplayResult",
    "ReplayResults",
    "RunFailure",
    "RunReplayResult",
    "StreamResult",
    "open_log",
    "replay",
    "replay_async",
    "replay_graph",
    "replay_graph_async",
]
