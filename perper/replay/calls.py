"""Calls, agents and agent state under replay: answered from the recording.

A replayed caller gets each call's recorded outcome (its result, or the CallFailedError
it raised) instead of running the callee; a call the recording does not have, or one
made with other arguments, is a divergence. Agent-state reads and writes are recorded
effects, so they replay like ``ctx.now()``; nothing is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from perper import codec
from perper.agents import AgentRef
from perper.app import App, Kind, StreamFunction
from perper.diff import structural_diff
from perper.errors import AgentDestroyedError
from perper.replay.results import START
from perper.runtime.calls import (
    DESTROYED,
    call_id,
    called_name,
    child_instance,
    pack_call_params,
    result_of,
)

if TYPE_CHECKING:
    from perper.replay.host import ReplayHost


class ReplayCalls:
    """The :class:`perper.agents.Caller` of an execution under replay."""

    def __init__(self, host: ReplayHost) -> None:
        self.host = host

    def _reserve(self) -> int:
        index = self.host._calls
        self.host._calls = index + 1
        return index

    def call(
        self,
        fn: StreamFunction | str,
        agent: AgentRef | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Awaitable[Any]:
        host = self.host
        function = called_name(fn, host.function)
        run = host.run if agent is None else agent.instance
        index = self._reserve()
        execution = call_id(run, function, index, host.execution, host.run, host._prefix)
        params = pack_call_params(function, args, kwargs)
        return self._call(execution, function, index, params, agent)

    async def _call(
        self, execution: str, function: str, index: int, params: bytes, agent: AgentRef | None
    ) -> Any:
        host = self.host
        recorded = host.records.get(execution)
        if recorded is None:
            entry = await host.log.meta_get("executions", execution)
            if entry is not None:
                from perper.runtime.records import ExecutionRecord

                recorded = ExecutionRecord.from_meta(entry.value)
        actual = {"function": function, "params": codec.unpack(params)}
        if recorded is None and agent is not None:
            run = await host.log.meta_get("runs", agent.instance)
            if run is not None and run.value["status"] == DESTROYED:
                raise AgentDestroyedError(agent.instance, function)
        if recorded is None:
            raise host.diverge(
                START,
                index,
                None,
                actual,
                f"the replay called {function} as {execution!r}, which the recording never called",
                diff=[],
            )
        if recorded.function != function or recorded.params != params:
            expected = {"function": recorded.function, "params": codec.unpack(recorded.params)}
            raise host.diverge(
                START,
                index,
                expected,
                actual,
                f"the replay called {execution!r} with another function or arguments than "
                "the recording",
                diff=structural_diff(expected, actual, path="call"),
            )
        host.starts_compared += 1
        host.started.add(execution)
        async for _, outcome in host.log.read(execution, 0, 1):
            return result_of(outcome, function, execution)
        raise host.end(f"call {execution!r} has no recorded result")

    def start_agent(
        self, app: App, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Awaitable[AgentRef]:
        host = self.host
        app.launcher_function.bind(args, kwargs)
        instance = child_instance(
            host.execution, host.run, app, self._reserve(), host.record.kind == Kind.LAUNCHER
        )

        launcher = f"{instance}/{app.launcher_function.name}"
        if launcher in host.records:
            host.started.add(launcher)
            host.starts_compared += 1

        async def started() -> AgentRef:
            return AgentRef(instance, app.name)

        return started()

    def destroy(self, agent: AgentRef) -> Awaitable[None]:
        host = self.host
        index = self._reserve()
        for record in host.records.values():
            if record.kind == Kind.STOP and record.run == agent.instance:
                stop = call_id(
                    agent.instance, record.function, index, host.execution, host.run, host._prefix
                )
                if stop == record.id:
                    host.started.add(stop)
                    host.starts_compared += 1

        async def destroyed() -> None:
            return None

        return destroyed()

    async def state_get(self, key: str, default: Any) -> Any:
        present, value = self.host.effect("agent_state.get", _never)
        return value if present else default

    async def state_set(self, key: str, value: Any) -> None:
        self.host.effect("agent_state.set", _never)

    async def state_remove(self, key: str) -> None:
        self.host.effect("agent_state.remove", _never)

    async def state_update(self, key: str, fn: Callable[[Any], Any]) -> Any:
        return self.host.effect("agent_state.update", _never)


def _never() -> Any:
    raise AssertionError("a replay never makes a new effect")
