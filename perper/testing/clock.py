"""A clock that advances per input item, for the in-memory test harnesses.

``run_function`` and ``check_recoverable`` take ``time_schedule=``: the value
``ctx.now()`` reads while the function handles each input item, so processing-time logic
(timeouts, windows by arrival time) can be tested without a real clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from perper.errors import ConfigError

#: What ``ctx.now()`` reads in the harnesses when no schedule is given.
EPOCH = 1_700_000_000.0

TimeSchedule = float | Sequence[float]


class ItemClock:
    """``ctx.now()`` as a function of how many input items the function has finished.

    Args:
        schedule: a number of seconds the clock advances per input item (item ``i`` is
            handled at ``EPOCH + i * schedule``), or the clock value for each item in
            the order the function reads them (after the last, it stays at the last).
        consumed: input items already finished (a recovery resuming from a checkpoint).

    Raises:
        ConfigError: an empty, decreasing or negative schedule.
    """

    def __init__(self, schedule: TimeSchedule, *, consumed: int = 0) -> None:
        if isinstance(schedule, int | float):
            if schedule < 0:
                raise ConfigError(
                    f"time_schedule={schedule!r}: the clock cannot go back; give seconds >= 0"
                )
            self._step: float | None = float(schedule)
            self._times: tuple[float, ...] = ()
        else:
            times = tuple(float(t) for t in schedule)
            if not times:
                raise ConfigError("time_schedule=[]: give one clock value per input item")
            if any(b < a for a, b in itertools.pairwise(times)):
                raise ConfigError(
                    f"time_schedule={list(times)!r} decreases: the clock cannot go back"
                )
            self._step, self._times = None, times
        self.consumed = consumed

    def on_boundary(self, execution: str, boundary: str, count: int) -> None:
        """The runtime's boundary hook (``RuntimeHooks.on_boundary``): an ``item``
        boundary means the function finished an input item."""
        if boundary == "item":
            self.consumed += 1

    def __call__(self) -> float:
        if self._step is not None:
            return EPOCH + self.consumed * self._step
        return self._times[min(self.consumed, len(self._times) - 1)]
