"""``assert_replays``: a recorded log as a regression test."""

from __future__ import annotations

import os

from perper.app import App
from perper.replay import ReplayResults, replay, replay_async
from perper.store.base import LogStore


def assert_replays(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    function: str | None = None,
    execution: str | None = None,
    run: str | None = None,
    freeze_clock: bool = True,
) -> ReplayResults:
    """Replay ``log`` with today's ``app`` and fail unless every execution reproduces it.

    Example::

        def test_production_log_still_replays():
            assert_replays("fixtures/prod-2024-05.db", app)

    Returns:
        the :class:`~perper.replay.ReplayResults`, all identical.

    Raises:
        ReplayDivergedError: (an AssertionError) an execution diverged; the message shows
            the function, execution, seq, expected and actual values and a diff.
        ReplayError: the log cannot be replayed (a function missing, parameters that no
            longer fit, not a perper log); the message says why.
    """
    results = replay(
        log, app, function=function, execution=execution, run=run, freeze_clock=freeze_clock
    )
    results.raise_on_failure()
    return results


async def assert_replays_async(
    log: str | os.PathLike[str] | LogStore,
    app: App | str | os.PathLike[str],
    *,
    function: str | None = None,
    execution: str | None = None,
    run: str | None = None,
    freeze_clock: bool = True,
) -> ReplayResults:
    """:func:`assert_replays`, for async tests."""
    results = await replay_async(
        log, app, function=function, execution=execution, run=run, freeze_clock=freeze_clock
    )
    results.raise_on_failure()
    return results
