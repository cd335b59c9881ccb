"""The one error tree of perper.

Every error perper raises on purpose is a :class:`PerperError`. Messages name the value
at fault, what was expected and how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class PerperError(Exception):
    """Base class of every error perper raises on purpose."""


class ConfigError(PerperError):
    """Bad input from the user: an app, a parameter, a URL, a command-line value."""


class StoreError(PerperError):
    """Something went wrong in a log store."""


class ConflictError(StoreError):
    """A different item was appended at a position that already holds an item."""

    def __init__(self, stream: str, seq: int, stored: Any, new: Any) -> None:
        self.stream = stream
        self.seq = seq
        self.stored = stored
        self.new = new
        super().__init__(
            f"stream {stream!r} already holds {stored!r} at seq {seq}; "
            f"refusing to overwrite it with {new!r} (streams are append-only)"
        )


class GapError(StoreError):
    """An append started beyond the head of the stream."""

    def __init__(self, stream: str, seq: int, head: int) -> None:
        self.stream = stream
        self.seq = seq
        self.head = head
        super().__init__(
            f"append to stream {stream!r} at seq {seq} would leave a gap: "
            f"the stream holds {head} items, so the next append must start at seq {head}"
        )


class SealedError(StoreError):
    """An append went past the end of a stream that was sealed (finished)."""

    def __init__(self, stream: str, seq: int, head: int) -> None:
        self.stream = stream
        self.seq = seq
        self.head = head
        super().__init__(
            f"stream {stream!r} is sealed at {head} items; refusing new items at seq {seq}"
        )


class FencedError(StoreError):
    """A write carried a lease epoch older than the current one (a stale owner)."""

    def __init__(self, what: str, epoch: int, current: int) -> None:
        self.what = what
        self.epoch = epoch
        self.current = current
        super().__init__(
            f"write to {what!r} with lease epoch {epoch} refused: a newer owner holds epoch "
            f"{current} (this worker lost its lease and must stop)"
        )


class StoreUnavailableError(StoreError):
    """The store could not be reached or opened."""


class FormatError(StoreError):
    """A store's on-disk format is not one this perper reads (other version or corrupt)."""


class TooLargeError(StoreError):
    """One item is larger, encoded, than the store can hold in one record."""

    def __init__(self, stream: str, seq: int, size: int, limit: int, where: str) -> None:
        self.stream = stream
        self.seq = seq
        self.size = size
        self.limit = limit
        super().__init__(
            f"item at seq {seq} of stream {stream!r} is {size:,} bytes encoded, above the "
            f"{limit:,}-byte limit of one item in {where}; split it into smaller items "
            "(or keep large blobs outside the log and yield a reference)"
        )


class TrimmedError(StoreError):
    """A read asked for items of an ephemeral stream that were deleted once every reader
    had passed them (``@app.stream(retention="ephemeral")``, docs/retention.md)."""

    def __init__(self, stream: str, position: int, first: int, where: str = "") -> None:
        self.stream = stream
        self.position = position
        self.first = first
        place = f"{where}: " if where else ""
        super().__init__(
            f"{place}stream {stream!r} was trimmed: seq {position} is gone, its first stored "
            f"seq is {first} (an ephemeral stream keeps only what some reader still needs); "
            f"read from seq {first} on, or recompute the stream from its inputs"
        )


class StoreClosedError(StoreError):
    """A call on a store after its ``close()``: open a new store instead."""


class HeadMovedError(StoreError):
    """Raised by ``LogStore.write_segment`` when the stream's head is not where the write
    expected (another writer appended or sealed first, or a higher epoch wrote): the caller
    re-reads ``info`` and decides (``LogStore.append`` compares and retries)."""


class EncodeError(PerperError, TypeError):
    """A value cannot be encoded with msgpack.

    Attributes:
        type_name: the name of the offending type.
        path: where in the value it sits, e.g. ``item["a"][2]``.
        index: position in the batch being encoded, if any.
    """

    def __init__(self, type_name: str, path: str, index: int | None = None) -> None:
        self.type_name = type_name
        self.path = path
        self.index = index
        # The likeliest coroutine here is a ctx.start or ctx.call whose await was left out.
        missing_await = (
            "; a coroutine is what a call returns before it is awaited: is an 'await' "
            "missing, as in 'await ctx.start(...)'?"
            if type_name == "coroutine"
            else ""
        )
        super().__init__(
            f"cannot encode {type_name} at {path}: items must be msgpack values "
            "(None, bool, int within 64 bits, float, str, bytes, list, tuple, dict) "
            "or dataclasses registered with perper.codec.register" + missing_await
        )


class NondeterminismError(PerperError):
    """A re-executed function yielded something other than what it had recorded."""

    def __init__(
        self,
        *,
        execution: str,
        function: str,
        seq: int,
        stored: Any,
        new: Any,
        diff: str = "",
        what: str = "item",
    ) -> None:
        self.execution = execution
        self.function = function
        self.seq = seq
        self.stored = stored
        self.new = new
        self.diff = diff
        message = (
            f"execution {execution!r} (function {function!r}) is not deterministic: "
            f"on re-execution it produced a different {what} at seq {seq}\n"
            f"  stored: {stored!r}\n"
            f"  new:    {new!r}"
        )
        if diff:
            message += "\n  diff:\n" + "\n".join("    " + line for line in diff.splitlines())
        message += (
            "\n  a stream function must be a pure function of its parameters, inputs, "
            "ctx.state and recorded effects: use ctx.now(), ctx.random() and ctx.uuid() "
            "instead of the clock or global randomness"
        )
        super().__init__(message)


class ExecutionFailedError(PerperError):
    """A stream function raised; the traceback is stored with its execution."""

    def __init__(self, execution: str, function: str, error: str) -> None:
        self.execution = execution
        self.function = function
        self.error = error
        super().__init__(f"execution {execution!r} (function {function!r}) failed:\n{error}")


class ReplayError(PerperError):
    """A recorded log cannot be replayed."""


# ----------------------------------------------------------------------------------
# Errors of the replay, the recovery check, the fabric and the simulator: one tree.


class ReplayDivergedError(ReplayError, AssertionError):
    """Today's code does not reproduce a recorded log (``results`` says where).

    An AssertionError too, so a test that replays a log fails rather than errors.
    """

    def __init__(self, message: str, results: Any = None) -> None:
        super().__init__(message)
        self.results = results


class RecoveryError(PerperError, AssertionError):
    """A function's output after a crash and recovery differs from its uncrashed output."""


class FabricError(PerperError):
    """A local Ignite node could not be set up, started, stopped or queried.

    Args:
        message: One-line description of what went wrong and what to do about it.
        log_path: The node log that explains it, if any.
        log_tail: The last lines of that log, quoted in ``str(error)``.
    """

    def __init__(
        self, message: str, *, log_path: Path | None = None, log_tail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.log_path = log_path
        self.log_tail = log_tail

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        where = f" of {self.log_path}" if self.log_path else ""
        lines = len(self.log_tail.splitlines())
        return f"{self.message}\n--- last {lines} lines{where} ---\n{self.log_tail}"


class SimulationError(PerperError):
    """The simulation itself could not go on (not a finding about the app)."""


class SimulationRefused(SimulationError):
    """Code under simulation asked for something the simulator does not simulate."""


class Deadlock(SimulationError):
    """Nothing is runnable and no timer is pending, yet the main coroutine is not done.

    Attributes:
        sites: one line per stuck task: its owner, coroutine and await site.
    """

    def __init__(self, message: str, sites: list[str]) -> None:
        self.sites = sites
        super().__init__(message + "".join("\n  " + site for site in sites))


class StepBudgetExceeded(SimulationError):
    """The simulation ran more steps than its budget (a livelock, or a budget too small).

    Attributes:
        sites: one line per pending task: its owner, coroutine and await site.
    """

    def __init__(self, message: str, sites: list[str]) -> None:
        self.sites = sites
        super().__init__(message + "".join("\n  " + site for site in sites))


class SimulationFailed(PerperError, AssertionError):
    """A simulated run violated a check; ``result`` holds the details."""

    def __init__(self, message: str, result: Any) -> None:
        self.result = result
        super().__init__(message)


class CallFailedError(PerperError):
    """A called function raised: ``ctx.call`` / ``agent.call`` raise this in the caller.

    Attributes:
        function: the called function's name.
        execution: the call's execution id.
        error_type: the callee's exception type name.
        error_message: its message.
        traceback: the callee's traceback, as text.
    """

    def __init__(
        self, function: str, execution: str, error_type: str, error_message: str, traceback: str
    ) -> None:
        self.function = function
        self.execution = execution
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback
        super().__init__(
            f"call {execution!r} of {function!r} raised {error_type}: {error_message}\n"
            f"callee traceback:\n{traceback}"
        )


class AgentDestroyedError(PerperError):
    """A call to (or start of) an agent instance that has been destroyed."""

    def __init__(self, instance: str, function: str) -> None:
        self.instance = instance
        self.function = function
        super().__init__(
            f"cannot call {function!r} on agent {instance!r}: it was destroyed; start a "
            "new instance with ctx.start_agent"
        )
