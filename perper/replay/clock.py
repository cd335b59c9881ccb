"""Freezing the clock for code that reads it directly (best effort, via freezegun).

``ctx.now()`` replays exactly: it returns the recorded value. Code that calls
``time.time()`` or ``datetime.now()`` itself cannot be replayed exactly, because the log
holds no such readings. While an execution replays, the wall clock is frozen at the
last ``ctx.now()`` value it was handed (at its first recorded ``ctx.now()`` before that,
and at :data:`DEFAULT_FROZEN_TIME` when it never called ``ctx.now()``), so code that
uses the clock at day or hour granularity near its ``ctx.now()`` calls replays.
"""

from __future__ import annotations

import datetime as _datetime
from types import TracebackType
from typing import Any

#: Where the clock is frozen for an execution that never called ``ctx.now()``:
#: 2000-01-01T00:00:00Z. A fixed instant, so a replay does not depend on when it runs.
DEFAULT_FROZEN_TIME = 946684800.0

# Made before any freezing, so it is a real datetime.
_EPOCH = _datetime.datetime(1970, 1, 1)


class FrozenClock:
    """Freezes ``time.time()``, ``datetime.now()`` and friends while in use.

    A no-op when ``enabled`` is False or freezegun is not installed (``available``
    tells which). The event loop keeps the real monotonic clock.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.available = False
        self._freezer: Any = None
        self._factory: Any = None
        self._lazy: Any = None
        #: Every instant the clock was frozen at (to name frozen readings in messages).
        self.instants: set[float] = {DEFAULT_FROZEN_TIME}

    def __enter__(self) -> FrozenClock:
        if not self.enabled:
            return self
        try:
            import freezegun
        except ImportError:
            return self
        self.available = True
        # rich (the progress bar) keeps the real clock; everything else sees the frozen one.
        self._freezer = freezegun.freeze_time(
            _instant(DEFAULT_FROZEN_TIME), real_asyncio=True, ignore=["rich"]
        )
        self._factory = self._freezer.start()
        self._lazy = _make_lazy(self._factory)
        return self

    def move_to(self, seconds: float) -> None:
        """Freeze the clock at ``seconds`` since the epoch."""
        self.instants.add(seconds)
        if self._lazy is not None:
            self._lazy.seconds = seconds
        elif self._factory is not None:
            self._factory.move_to(_instant(seconds))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._freezer is not None:
            self._freezer.stop()
            self._freezer = self._factory = self._lazy = None


def _instant(seconds: float) -> _datetime.datetime:
    # Naive UTC, as freezegun keeps it.
    return _EPOCH + _datetime.timedelta(seconds=seconds)


def _make_lazy(factory: Any) -> Any:
    """Swap freezegun's frozen-time factory for one that converts the frozen instant to a
    datetime only when the clock is read.

    ``move_to`` costs microseconds; a function calling ``ctx.now()`` per item would pay
    them per item while rarely reading the clock itself. This reaches into freezegun's
    factory stack, so it checks that stack looks as expected and returns None (plain
    ``move_to``) otherwise.
    """
    from freezegun import api

    stack = getattr(api, "freeze_factories", None)
    base = getattr(api, "FrozenDateTimeFactory", None)
    if not isinstance(stack, list) or not stack or stack[-1] is not factory or base is None:
        return None

    class LazyFactory(base):  # type: ignore[misc, valid-type]
        def __init__(self, seconds: float) -> None:
            self.seconds = seconds
            self._for: float | None = None
            self._at = _EPOCH

        def __call__(self) -> _datetime.datetime:
            if self._for != self.seconds:
                self._at = _instant(self.seconds)
                self._for = self.seconds
            return self._at

        @property
        def time_to_freeze(self) -> _datetime.datetime:
            return self()

        @time_to_freeze.setter
        def time_to_freeze(self, value: _datetime.datetime) -> None:
            self.seconds = (value - _EPOCH).total_seconds()

    lazy = LazyFactory(DEFAULT_FROZEN_TIME)
    stack[-1] = lazy
    return lazy


def frozen_readings(value: Any, instants: set[float], expected: Any = None) -> list[float]:
    """The numbers in ``value`` (not in ``expected``) that equal an instant the clock was
    frozen at, whole seconds included: readings of the frozen clock, not of a real one."""
    found: list[float] = []
    known = set(_numbers(expected))
    wholes = {float(int(t)) for t in instants} | set(instants)
    for number in _numbers(value):
        if number in wholes and number not in known and number not in found:
            found.append(number)
    return found


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in _numbers(v)]
    return []
