"""The runtime's tuning knobs and test hooks, as values passed in.

:class:`RuntimeSettings` is the one list of knobs: :class:`~perper.runtime.Runtime`,
the simulator's deployments and scenarios, :mod:`perper.testing` and the command line
all build one instead of re-listing them. :class:`RuntimeHooks` is what test harnesses
and the simulator inject to observe or disturb a worker (crash at a boundary, force
checkpoints, switch on a planted bug); production code passes none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from perper.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """How a worker runs executions. Every time is in seconds of event-loop time.

    Attributes:
        batch_size: output items buffered before they are appended as one segment.
        flush_delay: how long a yielded item may wait in the buffer.
        lease_ttl: time without a renewal after which another worker may take an
            execution over.
        checkpoint_every: checkpoint-mode functions checkpoint after consuming this many
            input items (a function's own ``checkpoint_every`` wins).
        checkpoint_interval: ... or after this long.
        poll_interval: how often the worker looks for executions to run.
        store_retry_limit: how long a worker keeps retrying an unavailable store before
            it gives up with :class:`~perper.errors.StoreUnavailableError`.
        read_wait_warning: how long ``ctx.read`` waits on a stream that nothing writes
            before it logs what it is waiting for (it keeps waiting).

    Raises:
        ConfigError: a value out of range (named, with the range).
    """

    batch_size: int = 1000
    flush_delay: float = 0.05
    lease_ttl: float = 2.0
    checkpoint_every: int = 1000
    checkpoint_interval: float = 5.0
    poll_interval: float = 0.05
    store_retry_limit: float = 60.0
    read_wait_warning: float = 30.0

    def __post_init__(self) -> None:
        for name in ("batch_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be a whole number of at least 1")
        for name in ("lease_ttl", "checkpoint_interval", "poll_interval", "read_wait_warning"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0:
                raise ConfigError(f"{name}={value!r} must be a positive number of seconds")
        for name in ("flush_delay", "store_retry_limit"):
            value = getattr(self, name)
            if not _is_number(value) or not value >= 0:
                raise ConfigError(f"{name}={value!r} must be zero or more seconds")

    def with_overrides(self, **overrides: Any) -> RuntimeSettings:
        """A copy with the named fields changed.

        Raises:
            ConfigError: a name that is not a setting, or a value out of range.
        """
        known = {f.name for f in fields(self)}
        for name in overrides:
            if name not in known:
                raise ConfigError(
                    f"{name!r} is not a runtime setting; use one of {', '.join(sorted(known))}"
                )
        return replace(self, **overrides)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


class Boundary(StrEnum):
    """The points of an execution where :attr:`RuntimeHooks.on_boundary` is called.

    Each is a point a crash can hit and recovery must handle:

    * ``read-start``: a ``ctx.read`` is about to fetch its first item (what the function
      yielded before it, its prologue, is still buffered);
    * ``item``: the function asks for the next item (it has finished with the last one);
      the count is the items this read has consumed;
    * ``finished``: the function returned and its final checkpoint is saved; the output
      stream is not sealed yet;
    * ``sealed``: the output stream is sealed; the execution is not marked done yet.
    """

    READ_START = "read-start"
    ITEM = "item"
    FINISHED = "finished"
    SEALED = "sealed"


class PlantedBug(StrEnum):
    """Deliberate runtime bugs, switched on only by the simulator's self-tests to prove
    it catches them."""

    APPEND_WITHOUT_COMPARE = "append-without-compare"
    CHECKPOINT_BEFORE_FLUSH = "checkpoint-before-flush"
    IGNORE_FENCING = "ignore-fencing"


@dataclass(frozen=True, slots=True)
class RuntimeHooks:
    """What a test harness or the simulator injects into a worker.

    Attributes:
        on_boundary: called as ``(execution, boundary, count)`` at every
            :class:`Boundary`; it may raise (a BaseException, to simulate kill -9 there).
        force_checkpoint_every: overrides every function's ``checkpoint_every``.
        planted_bugs: :class:`PlantedBug` values to switch on.
    """

    on_boundary: Callable[[str, Boundary, int], None] | None = None
    force_checkpoint_every: int | None = None
    planted_bugs: frozenset[PlantedBug] = field(default=frozenset())

    def __post_init__(self) -> None:
        every = self.force_checkpoint_every
        if every is not None and every < 1:
            raise ConfigError(f"force_checkpoint_every={every!r} must be at least 1")


def planted_bugs(names: Iterable[str]) -> frozenset[PlantedBug]:
    """The :class:`PlantedBug` values named by ``names``.

    Raises:
        ConfigError: a name that is not a planted bug.
    """
    known = {bug.value for bug in PlantedBug}
    for name in names:
        if name not in known:
            raise ConfigError(f"planted bug {name!r} is not one of {', '.join(sorted(known))}")
    return frozenset(PlantedBug(name) for name in names)


#: No hooks: what production workers run with.
NO_HOOKS = RuntimeHooks()
