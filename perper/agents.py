"""Agents: instances of an App that call each other's functions and share durable state.

An :class:`~perper.App` is an agent type and a run is an agent instance. This module
holds what user code handles: :class:`AgentRef` (a handle on an instance, which travels
in parameters, items, results and state like a StreamRef), :class:`AgentState` (the
instance's durable key-value map, ``ctx.agent_state``). The machinery behind them, and
``perper.call`` (a call from outside the runtime), is in :mod:`perper.runtime.calls`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from perper.codec import register
from perper.errors import ConfigError

if TYPE_CHECKING:
    from perper.app import App, StreamFunction

__all__ = ["AgentRef", "AgentState", "Caller", "current_caller"]


class Caller(Protocol):
    """What an execution's host provides for calls, agents and agent state (internal)."""

    def call(
        self,
        fn: StreamFunction | str,
        agent: AgentRef | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]: ...

    def start_agent(
        self, app: App, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[AgentRef]: ...

    def destroy(self, agent: AgentRef) -> Awaitable[None]: ...

    async def state_get(self, key: str, default: Any) -> Any: ...

    async def state_set(self, key: str, value: Any) -> None: ...

    async def state_remove(self, key: str) -> None: ...

    async def state_update(self, key: str, fn: Callable[[Any], Any]) -> Any: ...


class _CallerSource(Protocol):
    def caller(self) -> Caller: ...


# The host of the execution running in this task (set by its Context); asyncio copies
# it into the tasks the execution starts, so agent.call works inside asyncio.gather.
_current: contextvars.ContextVar[_CallerSource] = contextvars.ContextVar("perper_execution")


def set_current(host: _CallerSource) -> None:
    """Make ``host`` the execution that AgentRef methods in this task act for (internal)."""
    _current.set(host)


def current_host() -> _CallerSource | None:
    """The execution AgentRef methods in this task act for, if any (internal: a call run
    inline in its caller's task puts the caller back with :func:`set_current`)."""
    return _current.get(None)


def current_caller(what: str) -> Caller:
    """The calling execution's :class:`Caller`.

    Raises:
        ConfigError: not inside a perper function.
    """
    try:
        host = _current.get()
    except LookupError:
        raise ConfigError(
            f"{what} must be awaited inside a perper function (a launcher, stream, action or "
            "call); from outside use await perper.call(store, run, function, ...)"
        ) from None
    return host.caller()


@register(name="perper.AgentRef")
@dataclass(frozen=True, slots=True)
class AgentRef:
    """A handle on an agent instance, returned by ``ctx.start_agent``.

    Like a StreamRef it encodes as itself, so it may be passed in parameters, items,
    call results and ``ctx.state`` / ``ctx.agent_state``.

    Attributes:
        instance: the instance's id (its run name).
        app: the name of its App (agent type).
    """

    instance: str
    app: str

    def __str__(self) -> str:
        return self.instance

    def call(self, fn: StreamFunction | str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Call ``fn`` (a name, or the ``@app.call`` function) on this instance; await the
        result. Exactly once, like ``ctx.call``.

        Raises:
            CallFailedError: the callee raised.
            AgentDestroyedError: the instance was destroyed before this call was made.
        """
        return current_caller("agent.call").call(fn, self, args, kwargs)

    def destroy(self) -> Awaitable[None]:
        """Run the App's ``@app.stop`` function (if any), cancel the instance's running
        executions and mark it destroyed; later calls raise AgentDestroyedError."""
        return current_caller("agent.destroy").destroy(self)


class AgentState:
    """``ctx.agent_state``: the agent instance's durable key-value map, shared by all its
    executions. Every read and write is a recorded effect: recovery and replay see the
    same values, and each write is applied once even if the execution crashes after it.
    Values are msgpack values (StreamRef and AgentRef included).
    """

    __slots__ = ("_source",)

    def __init__(self, source: _CallerSource) -> None:
        self._source = source

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default``."""
        return await self._source.caller().state_get(_check_key(key), default)

    async def set(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``."""
        await self._source.caller().state_set(_check_key(key), value)

    async def remove(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""
        await self._source.caller().state_remove(_check_key(key))

    async def update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Compare-and-set: store ``fn(current value or None)`` unless another execution
        wrote ``key`` meanwhile (then ``fn`` runs again on the newer value); return the
        new value. ``fn`` must be a pure function."""
        return await self._source.caller().state_update(_check_key(key), fn)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise ConfigError(f"agent_state key {key!r} must be a non-empty str")
    return key
