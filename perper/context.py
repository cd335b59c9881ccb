"""Context: what every stream function, action and launcher is handed as ``ctx``."""

from __future__ import annotations

import logging
import uuid as _uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from perper.agents import AgentRef, AgentState, Caller, set_current
from perper.app import App, StreamFunction
from perper.errors import ConfigError
from perper.store.index import IndexSpec, normalize_index
from perper.streamref import StreamRef


class ExecutionHost(Protocol):
    """What the runtime provides behind a :class:`Context` (internal)."""

    execution: str
    run: str
    function: str
    state: dict[str, Any]

    def read(
        self, stream: str, start: int | Literal["live"] = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]: ...

    def read_batches(
        self, stream: str, start: int | Literal["live"] = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]: ...

    def reserve_call(self, fn: StreamFunction) -> StreamRef: ...

    def query(
        self,
        stream: str,
        where: str,
        params: Sequence[Any],
        order_by: str,
        limit: int | None,
    ) -> AsyncIterator[tuple[int, Any]]: ...

    def declare_index(self, stream: str, spec: IndexSpec) -> None: ...

    async def start_reserved(
        self, ref: StreamRef, fn: StreamFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> StreamRef: ...

    def effect(self, kind: str, make: Callable[[], Any]) -> Any: ...

    def entropy_bytes(self, count: int) -> bytes: ...

    def entropy_float(self) -> float: ...

    def wall_clock(self) -> float: ...

    def caller(self) -> Caller: ...

    async def destroy(self, stream: str) -> None: ...


class Context:
    """The handle a function uses to read streams, start others and record effects.

    Attributes:
        execution: the id of this execution (also the name of its output stream).
        run: the run it belongs to.
        function: the registered function's name.
        log: a :class:`logging.Logger` named ``{app}.{function}``.
    """

    __slots__ = ("_host", "execution", "function", "log", "run")

    def __init__(self, host: ExecutionHost, log: logging.Logger) -> None:
        self._host = host
        self.execution = host.execution
        self.run = host.run
        self.function = host.function
        self.log = log
        set_current(host)

    def __repr__(self) -> str:
        return f"<Context {self.execution}>"

    @property
    def state(self) -> dict[str, Any]:
        """A dict of msgpack-able values saved with every checkpoint and restored on
        recovery in checkpoint mode. Keep all cross-item memory here."""
        return self._host.state

    def read(
        self, ref: StreamRef, *, start: int | Literal["live"] = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]:
        """Iterate over the items of a stream in seq order, waiting for new ones.

        Ends when the stream's writer has finished it (sealed it). After recovery it
        resumes from the checkpointed position.

        Args:
            ref: the stream.
            start: the first seq to read; ``"live"`` starts at the stream's head at this
                call, skipping what was stored before it (items appended after the call,
                before the loop asks for its first item, are read). That head is a
                recorded effect, taken at the call, so recovery and replay start at the
                same seq.
            with_seq: yield ``(seq, item)`` pairs instead of items.

        Raises:
            ConfigError: ``ref`` is not a StreamRef, or ``start`` is neither a seq
                (an int >= 0) nor ``"live"``.
        """
        if not isinstance(ref, StreamRef):
            raise ConfigError(
                f"ctx.read({ref!r}) in {self.function!r}: pass a perper.StreamRef (the value "
                "ctx.start returned, received as a parameter)"
            )
        if start != "live" and (type(start) is not int or start < 0):
            raise ConfigError(
                f"ctx.read({ref.stream!r}, start={start!r}) in {self.function!r}: start is "
                'a seq (an int >= 0) or "live" (the head at this call)'
            )
        return self._host.read(ref.stream, start, with_seq)

    def read_batches(
        self, ref: StreamRef, *, start: int | Literal["live"] = 0, with_seq: bool = False
    ) -> AsyncIterator[Any]:
        """Iterate over a stream's items a batch at a time: a list of items per stored
        segment (the first may begin inside one, at ``start``), waiting for new ones.

        The batches are the stored segments themselves, so a recovered or replayed
        function sees the same batches as the first run. Asking for the next batch is
        what asking for the next item is to :meth:`read`: the function has finished
        with the last one, and a checkpoint may be taken there; after recovery the read
        resumes at the start of the batch that follows. Yield many items at once with
        ``yield perper.Batch(items)``.

        Args:
            ref: the stream.
            start: as for :meth:`read`.
            with_seq: yield ``(first_seq, items)`` pairs instead of lists.

        Raises:
            ConfigError: as for :meth:`read`.
        """
        self._check_read("read_batches", ref, start)
        return self._host.read_batches(ref.stream, start, with_seq)

    def _check_read(self, name: str, ref: Any, start: Any) -> None:
        if not isinstance(ref, StreamRef):
            raise ConfigError(
                f"ctx.{name}({ref!r}) in {self.function!r}: pass a perper.StreamRef (the "
                "value ctx.start returned, received as a parameter)"
            )
        if start != "live" and (type(start) is not int or start < 0):
            raise ConfigError(
                f"ctx.{name}({ref.stream!r}, start={start!r}) in {self.function!r}: start "
                'is a seq (an int >= 0) or "live" (the head at this call)'
            )

    def ingest(self, name: str, *, index: Mapping[str, type] | None = None) -> StreamRef:
        """The :class:`StreamRef` of this run's ingest stream ``{run}/{name}``: the stream
        that outside programs append to with :class:`perper.Producer` (or ``perper
        ingest``). Read it like any other stream.

        ``index={"user": int, ...}`` indexes those fields of its items (see
        :meth:`query`); the declaration is stored before this function next reads or
        queries.

        Raises:
            ConfigError: ``name`` is empty or holds ``/`` or ``#``, or ``index`` is bad.
        """
        if not isinstance(name, str) or not name or "/" in name or "#" in name:
            raise ConfigError(
                f"ctx.ingest({name!r}) in {self.function!r}: name the ingest stream with a "
                "non-empty str without '/' or '#', such as 'clicks'"
            )
        ref = StreamRef(f"{self.run}/{name}")
        if index is not None:
            spec = normalize_index(index, where=f"ctx.ingest({name!r}) index")
            self._host.declare_index(ref.stream, spec)
        return ref

    def query(
        self,
        ref: StreamRef,
        where: str,
        params: Sequence[Any] | None = None,
        *,
        order_by: str = "seq",
        limit: int | None = None,
    ) -> AsyncIterator[tuple[int, Any]]:
        """Iterate over ``(seq, item)`` of the items of an indexed stream whose indexed
        fields match the SQL condition ``where``, such as ``"user = ? AND amount > ?"``
        with ``params=[7, 10.0]`` (always bound, never spliced into the text).

        The query sees the stream as of its head when the loop first asks for a row;
        that position is a recorded effect, so recovery and replay get the same rows. It
        does not wait for more items.

        Args:
            ref: an indexed stream (``@app.stream(index=...)``, ``ctx.ingest(name,
                index=...)``, ``perper.Producer(..., index=...)``).
            where: a SQL condition over ``seq`` and the indexed fields.
            params: one value per ``?`` (None, int, float, str, bool or bytes).
            order_by: ``"seq"`` (the default), or indexed fields, each optionally
                followed by ``DESC``: ``"amount DESC"``; ties are in seq order.
            limit: at most this many rows (None: all).

        Raises:
            ConfigError: ``ref`` is not a StreamRef or not indexed, or the condition
                names a field that is not indexed (the message names the indexed ones),
                is not valid SQL or is unsafe (``;``, a subquery).
        """
        if not isinstance(ref, StreamRef):
            raise ConfigError(
                f"ctx.query({ref!r}) in {self.function!r}: pass a perper.StreamRef of an "
                "indexed stream"
            )
        return self._host.query(ref.stream, where, list(params or ()), order_by, limit)

    async def start(self, fn: StreamFunction, *args: Any, **kwargs: Any) -> StreamRef:
        """Start ``fn(ctx, *args, **kwargs)`` and return a reference to its output stream.

        Idempotent: the stream's id is derived from this execution and the call's index,
        so running the caller again re-attaches to the same stream.

        Raises:
            ConfigError: ``fn`` is not a stream function or action of this app, or the
                arguments do not fit it or are not msgpack-able.
        """
        ref = self._host.reserve_call(fn)
        return await self._host.start_reserved(ref, fn, args, kwargs)

    async def destroy(self, ref: StreamRef) -> None:
        """Cancel the execution writing ``ref`` and delete the stream from the store.

        Idempotent (a recovered caller destroys nothing twice). Readers of a destroyed
        stream wait on a stream that is gone: destroy a stream once they are done.

        Raises:
            ConfigError: ``ref`` is not a :class:`StreamRef`.
        """
        if not isinstance(ref, StreamRef):
            raise ConfigError(
                f"ctx.destroy({ref!r}) in {self.function!r}: pass the StreamRef that "
                "ctx.start returned"
            )
        await self._host.destroy(ref.stream)

    def declare(self, fn: StreamFunction) -> tuple[StreamRef, Callable[..., Awaitable[StreamRef]]]:
        """Reserve the output stream of ``fn`` before starting it, for cyclic graphs.

        Returns ``(ref, start)``: pass ``ref`` to other functions now and call
        ``await start(*args, **kwargs)`` once its own inputs exist.
        """
        ref = self._host.reserve_call(fn)

        async def start(*args: Any, **kwargs: Any) -> StreamRef:
            return await self._host.start_reserved(ref, fn, args, kwargs)

        return ref, start

    def now(self) -> float:
        """The wall-clock time in seconds since the epoch, recorded on first execution;
        recovery and replay return the recorded value."""
        return float(self._host.effect("now", self._host.wall_clock))

    def random(self) -> float:
        """A random float in [0, 1), recorded like :meth:`now`."""
        return float(self._host.effect("random", self._host.entropy_float))

    def uuid(self) -> _uuid.UUID:
        """A random UUID (version 4), recorded like :meth:`now`."""
        raw = self._host.effect(
            "uuid", lambda: _uuid.UUID(bytes=self._host.entropy_bytes(16), version=4).hex
        )
        return _uuid.UUID(hex=raw)

    # ------------------------------------------------------ calls and agents

    def call(self, fn: StreamFunction | str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Call the ``@app.call`` function ``fn`` on this agent instance; await its result.

        Exactly once: the call's id derives from this execution and the call's index
        (taken when ``ctx.call`` is called, so ``asyncio.gather`` of several calls gets
        the same ids every time); the result is durable, and a re-run of this execution
        gets the stored result without the callee running again.

        Raises:
            ConfigError: ``fn`` is not a call function of this app, or the arguments do
                not fit it.
            CallFailedError: the callee raised (its function, error type, message and
                traceback are on the error).
        """
        return self._host.caller().call(fn, None, args, kwargs)

    def start_agent(self, app: App, *args: Any, **kwargs: Any) -> Awaitable[AgentRef]:
        """Start an instance of the agent type ``app`` (another App, imported as a module)
        by running its launcher with these arguments; return its :class:`AgentRef` once
        the launcher has returned. The instance id derives from this execution and the
        call index, so a re-run re-attaches to the same instance.

        Raises:
            ConfigError: ``app`` is not a :class:`perper.App`, or the arguments do not fit
                its launcher.
            CallFailedError: the instance's launcher raised.
        """
        return self._host.caller().start_agent(app, args, kwargs)

    @property
    def agent_state(self) -> AgentState:
        """The agent instance's durable key-value map, shared by all its executions;
        every read and write is a recorded effect (see :class:`perper.AgentState`)."""
        return AgentState(self._host)
