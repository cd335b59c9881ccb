"""Calls, agents and agent state against every store kind."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import Any

import pytest

import perper
from perper import codec
from perper.runtime import Runtime
from perper.runtime.calls import list_agents
from perper.store import LogStore


class Crash(BaseException):
    """Stands for kill -9 inside an execution: nothing after it runs, nothing flushes."""


def counting_app(name: str = "counting", factor: int = 2) -> tuple[perper.App, dict[str, int]]:
    app = perper.App(name)
    runs = {"double": 0, "launcher": 0}

    @app.call
    async def double(ctx: perper.Context, x: int) -> int:
        runs["double"] += 1
        return factor * x

    @app.call
    async def nothing(ctx: perper.Context) -> None:
        return None

    @app.stream
    async def results(ctx: perper.Context, values: list[int]) -> Any:
        for value in values:
            yield value

    @app.launcher
    async def main(ctx: perper.Context, n: int = 3) -> None:
        runs["launcher"] += 1
        values = [await ctx.call(double, i) for i in range(n)]
        values.append(await ctx.call("double", 100))
        assert await ctx.call(nothing) is None
        await ctx.start(results, values)

    return app, runs


async def until(condition: Callable[[], bool], bound: float = 10.0) -> None:
    """Wait for ``condition`` to hold, for at most ``bound`` seconds of loop time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def items(store: LogStore, stream: str) -> list[Any]:
    return [item async for _, item in store.read(stream)]


async def executions(store: LogStore, prefix: str) -> dict[str, dict[str, Any]]:
    return {key: meta.value for key, meta in await store.meta_scan("executions", prefix=prefix)}


async def test_ctx_call_returns_the_callees_result(store: LogStore) -> None:
    app, runs = counting_app()
    result = await Runtime(store, app).run("r", {"n": 3})
    assert result.ok, str(result)
    assert await items(store, "r/results-5") == [0, 2, 4, 200]
    calls = await executions(store, "r/double-")
    assert sorted(calls) == ["r/double-0", "r/double-1", "r/double-2", "r/double-3"]
    assert all(value["kind"] == "call" and value["status"] == "done" for value in calls.values())
    assert runs["double"] == 4


async def test_a_rerun_caller_gets_stored_results_without_the_callee_running_again(
    store: LogStore,
) -> None:
    app = perper.App("rerun")
    runs = {"callee": 0, "crashed": 0}

    @app.call
    async def callee(ctx: perper.Context, x: int) -> float:
        runs["callee"] += 1
        return x + ctx.random()

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        first = await ctx.call(callee, 1)
        second = await ctx.call(callee, 2)
        await ctx.agent_state.set("results", [first, second])
        if not runs["crashed"]:
            runs["crashed"] += 1
            raise RuntimeError("the caller fails once, after its calls")

    first = await Runtime(store, app).run("r")
    assert not first.ok
    stored = [value for key, value in await store.meta_scan("runs")]
    assert stored
    assert runs["callee"] == 2
    second = await Runtime(store, app).run("r")
    assert second.ok, str(second)
    assert runs["callee"] == 2  # the re-run launcher got both results from the store
    outcome = [item async for _, item in store.read("r/callee-0")]
    assert len(outcome) == 1 and 1 <= outcome[0]["ok"] < 2


async def test_concurrent_calls_get_ids_from_their_call_order(store: LogStore) -> None:
    app = perper.App("gather")

    @app.call
    async def echo(ctx: perper.Context, x: int) -> int:
        await asyncio.sleep(0.001 * (x % 3))
        return x

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        answers = await asyncio.gather(*(ctx.call(echo, i) for i in range(20)))
        assert answers == list(range(20))

    assert (await Runtime(store, app).run("g")).ok
    for key, value in (await executions(store, "g/echo-")).items():
        index = int(key.rsplit("-", 1)[1])
        assert codec.unpack(value["params"]) == {"args": [index], "kwargs": {}}


async def test_a_callee_that_raises_makes_the_call_raise_call_failed_error(
    store: LogStore,
) -> None:
    app = perper.App("raising")
    caught: list[perper.CallFailedError] = []

    @app.call
    async def explode(ctx: perper.Context, x: int) -> int:
        raise ValueError(f"cannot take {x}")

    @app.launcher
    async def boom(ctx: perper.Context) -> None:
        try:
            await ctx.call("explode", 7)
        except perper.CallFailedError as error:
            caught.append(error)

    result = await Runtime(store, app).run("b")
    assert result.ok, str(result)
    [error] = caught
    assert error.function == "explode"
    assert error.error_type == "ValueError"
    assert error.error_message == "cannot take 7"
    assert "raise ValueError" in error.traceback
    assert "explode" in str(error)


async def test_calling_a_function_that_is_not_a_call_is_a_config_error(store: LogStore) -> None:
    app = perper.App("wrong")

    @app.stream
    async def numbers(ctx: perper.Context) -> Any:
        yield 1

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.call(numbers)

    result = await Runtime(store, app).run("w")
    assert not result.ok
    assert "only @app.call functions can be called" in result.failures[0].error


def container_app() -> perper.App:
    app = perper.App("box")

    @app.launcher
    async def start(ctx: perper.Context, label: str) -> None:
        await ctx.agent_state.set("label", label)
        await ctx.agent_state.set("id", str(ctx.uuid()))

    @app.call
    async def whoami(ctx: perper.Context, x: int) -> list[Any]:
        count = await ctx.agent_state.update("count", lambda n: (n or 0) + 1)
        return [await ctx.agent_state.get("label"), await ctx.agent_state.get("id"), x, count]

    @app.stop
    async def stop(ctx: perper.Context) -> None:
        await ctx.agent_state.set("stopped", True)

    return app


async def test_agents_answer_calls_with_their_own_state_and_refuse_calls_once_destroyed(
    store: LogStore,
) -> None:
    box = container_app()
    app = perper.App("user")
    seen: dict[str, Any] = {}

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        a = await ctx.start_agent(box, "a")
        b = await ctx.start_agent(box, label="b")
        await ctx.agent_state.set("agents", [a, b])  # an AgentRef travels in state
        answers = await asyncio.gather(
            *(agent.call("whoami", i) for i, agent in enumerate([a, b, a]))
        )
        seen["answers"] = answers
        seen["refs"] = await ctx.agent_state.get("agents")
        await a.destroy()
        try:
            await a.call("whoami", 9)
        except perper.AgentDestroyedError as error:
            seen["destroyed"] = str(error)
        seen["b"] = await b.call("whoami", 5)

    assert (await Runtime(store, app).run("u")).ok
    (la, ia, xa, _), (lb, ib, xb, cb), (la2, ia2, xa2, _) = seen["answers"]
    assert (la, xa, lb, xb, la2, xa2) == ("a", 0, "b", 1, "a", 2)
    assert ia == ia2 != ib
    assert cb == 1
    assert sorted(c for *_, c in (seen["answers"][0], seen["answers"][2])) == [1, 2]
    assert seen["refs"] == [perper.AgentRef("u.box-0", "box"), perper.AgentRef("u.box-1", "box")]
    assert "was destroyed" in seen["destroyed"]
    assert seen["b"][3] == 2
    agents = {row.instance: row for row in await list_agents(store)}
    assert agents["u.box-0"].status == "destroyed"
    assert agents["u.box-0"].parent == "u/main"
    assert agents["u.box-1"].status != "destroyed"
    log = await items(store, "u.box-0/#agent-state")
    assert [entry[:3] for entry in log if entry[0] == "stopped"] == [["stopped", "set", True]]


async def test_an_agent_state_write_is_applied_once_when_the_execution_crashes_after_it(
    store: LogStore,
) -> None:
    app = perper.App("once")
    crashes = {"left": 1}

    @app.stream
    async def bump(ctx: perper.Context) -> Any:
        value = await ctx.agent_state.update("n", lambda n: (n or 0) + 1)
        if crashes["left"]:
            crashes["left"] -= 1
            raise Crash()  # after the write, before its effect is recorded
        yield value

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(bump)

    first = Runtime(store, app, lease_ttl=0.2)
    await first.prepare_run("o")
    worker = asyncio.create_task(first.work(run="o"))
    await until(lambda: crashes["left"] == 0 and all(t.done() for t, _ in first._tasks.values()))
    worker.cancel()  # the worker dies with the crashed execution's lease held
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    result = await asyncio.wait_for(Runtime(store, app, lease_ttl=0.2).run("o"), timeout=30)
    assert result.ok, str(result)
    assert await items(store, "o/bump-0") == [1]
    log = await items(store, "o/#agent-state")
    assert [entry[:3] for entry in log] == [["n", "set", 1]]


async def test_perper_call_from_outside_is_idempotent_with_a_key(store: LogStore) -> None:
    app, runs = counting_app("outside")
    runtime = Runtime(store, app)
    assert (await runtime.run("o", {"n": 1})).ok
    before = runs["double"]
    stop = asyncio.Event()
    worker = asyncio.create_task(Runtime(store, app, poll_interval=0.01).work(stop=stop))
    try:
        first = await asyncio.wait_for(perper.call(store, "o", "double", 21, key="k1"), 30)
        again = await asyncio.wait_for(perper.call(store, "o", "double", 21, key="k1"), 30)
        other = await asyncio.wait_for(perper.call(store, "o", "double", x=5), 30)
    finally:
        stop.set()
        await worker
    assert (first, again, other) == (42, 42, 10)
    assert runs["double"] == before + 2
    assert "o/double@k1" in await executions(store, "o/")
    with pytest.raises(perper.ConfigError, match="no run"):
        await perper.call(store, "missing", "double", 1, key="k")


def test_agent_refs_round_trip_through_the_codec() -> None:
    ref = perper.AgentRef("run.box-0", "box")
    assert codec.unpack(codec.pack({"agents": [ref]})) == {"agents": [ref]}


async def test_starting_a_call_function_as_a_stream_is_a_config_error(store: LogStore) -> None:
    app = perper.App("misuse")

    @app.call
    async def answer(ctx: perper.Context) -> int:
        return 42

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.start(answer)

    result = await Runtime(store, app).run("m")
    assert not result.ok
    assert "call it with await ctx.call(answer, ...)" in result.failures[0].error


async def test_replay_answers_a_callers_calls_from_the_recording_and_compares_call_outcomes(
    store: LogStore,
) -> None:
    from perper.replay import replay_async

    app, runs = counting_app("replayed")
    assert (await Runtime(store, app).run("r", {"n": 3})).ok
    executed = runs["double"]
    results = await replay_async(store, app, run="r")
    assert results and all(result.ok for result in results), [r.describe() for r in results]
    assert {r.execution for r in results} >= {"r/main", "r/double-0", "r/nothing-4"}
    assert runs["double"] == executed + 4  # each call function replayed once, the caller's
    # calls answered from the recording

    changed, _ = counting_app("replayed", factor=3)  # today's code answers differently
    diverged = [r for r in await replay_async(store, changed, run="r") if not r.ok]
    assert [r.execution for r in diverged][:1] == ["r/double-1"]


async def test_a_call_served_by_the_callers_worker_runs_inline_without_a_lease_or_task(
    store: LogStore,
) -> None:
    app, runs = counting_app("inline")
    runtime = Runtime(store, app)
    spawned: list[str] = []
    claim = runtime.leases.claim

    async def counting_claim(execution: str, *, defer_fresh: bool = False) -> int | None:
        spawned.append(execution)
        return await claim(execution, defer_fresh=defer_fresh)

    runtime.leases.claim = counting_claim  # type: ignore[method-assign]
    assert (await runtime.run("i", {"n": 2})).ok
    assert runs["double"] == 3
    calls = await executions(store, "i/double-")
    assert sorted(calls) == ["i/double-0", "i/double-1", "i/double-2"]
    assert all(
        value["status"] == "done" and value["parent"] == "i/main" for value in calls.values()
    )
    for call in calls:
        info = await store.info(call)
        assert (info.head, info.sealed) == (1, True)
        assert await store.meta_get("leases", call) is None
    assert not [execution for execution in spawned if "/double-" in execution]


async def test_a_first_run_caller_looks_up_neither_its_call_records_nor_their_effects(
    store: LogStore,
) -> None:
    app, runs = counting_app("fresh")
    looked: list[str] = []
    meta_get, info = store.meta_get, store.info

    # Only the calls code's own look-ups count: a store's methods may call its info()
    # and meta_get() themselves (IgniteStore's writes do).
    def from_calls() -> bool:
        frame = sys._getframe(2)
        return frame.f_globals.get("__name__") == "perper.runtime.calls"

    async def counting_meta_get(table: str, key: str) -> Any:
        if table == "executions" and "/double-" in key and from_calls():
            looked.append(key)
        return await meta_get(table, key)

    async def counting_info(stream: str) -> Any:
        if "/double-" in stream and from_calls():
            looked.append(stream)
        return await info(stream)

    store.meta_get = counting_meta_get  # type: ignore[method-assign]
    store.info = counting_info  # type: ignore[method-assign]
    assert (await Runtime(store, app).run("f", {"n": 3})).ok
    assert runs["double"] == 4
    assert looked == []  # its first lease (epoch 1): no earlier run made these calls
    assert (await Runtime(store, app).run("f", {"n": 3})).ok
    assert runs["double"] == 4  # a re-run looks them up and finds them done


async def test_a_caller_killed_inside_an_inline_call_gets_it_done_once_with_its_recorded_effects(
    store: LogStore,
) -> None:
    app = perper.App("killed")
    crashes = {"left": 1}
    drawn: list[float] = []

    @app.call
    async def inner(ctx: perper.Context) -> int:
        return 1

    @app.call
    async def outer(ctx: perper.Context) -> float:
        value = ctx.random()
        drawn.append(value)
        await ctx.call(inner)  # records the draw before the nested call
        if crashes["left"]:
            crashes["left"] -= 1
            raise Crash()  # kill -9 of the caller's worker, inside the inline call
        return value

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        await ctx.agent_state.set("result", await ctx.call(outer))

    first = Runtime(store, app, lease_ttl=0.2)
    await first.prepare_run("k")
    worker = asyncio.create_task(first.work(run="k"))
    await until(lambda: crashes["left"] == 0 and all(t.done() for t, _ in first._tasks.values()))
    worker.cancel()  # the worker dies with the caller's lease held
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    assert await store.meta_get("executions", "k/outer-0") is None  # nothing recorded
    result = await asyncio.wait_for(Runtime(store, app, lease_ttl=0.2).run("k"), timeout=30)
    assert result.ok, str(result)
    assert drawn[0] == drawn[1]  # the re-run call used the draw its first run recorded
    assert await items(store, "k/outer-0") == [{"ok": drawn[0]}]
    record = await store.meta_get("executions", "k/outer-0")
    assert record is not None and record.value["status"] == "done"
    log = await items(store, "k/#agent-state")
    assert [entry[:3] for entry in log] == [["result", "set", drawn[0]]]


def test_binding_arguments_without_inspect_gives_what_inspect_gives() -> None:
    app = perper.App("binding")

    @app.call
    async def f(ctx: perper.Context, a: int, b: int = 2, c: Any = None) -> None:
        return None

    def by_inspect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = f.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    for args, kwargs in [((1,), {}), ((1, 3, 4), {}), ((), {"a": 1}), ((1,), {"c": 5})]:
        assert f.bind(args, kwargs) == by_inspect(args, kwargs)
        assert list(f.bind(args, kwargs)) == ["a", "b", "c"]
    for args, kwargs in [((), {}), ((1, 2, 3, 4), {}), ((1,), {"a": 1}), ((1,), {"d": 1})]:
        with pytest.raises(perper.ConfigError, match=r"cannot call f\(a"):
            f.bind(args, kwargs)


async def test_a_call_left_half_written_by_an_inline_run_gets_a_lease_above_its_epoch(
    store: LogStore,
) -> None:
    from perper.runtime.calls import seed_lease
    from perper.runtime.leases import Leases

    # The caller (lease epoch 4) ran the call inline and died after recording its effects.
    await store.append("r/f-0#effects", 0, [["random", 0.25]], epoch=4)
    await seed_lease(store, "r/f-0")
    epoch = await Leases(store, "w", 1.0).claim("r/f-0")
    assert epoch == 5  # a worker not serving the caller's App may now run it, unfenced
    await store.append("r/f-0#effects", 1, [["random", 0.5]], epoch=epoch)
    await seed_lease(store, "r/g-0")  # nothing written: no lease entry
    assert await store.meta_get("leases", "r/g-0") is None


async def test_a_stale_caller_that_finds_the_agent_destroyed_gets_the_call_the_new_owner_made() -> (
    None
):
    from perper.store.memory import MemoryStore

    class FirstLookMisses(MemoryStore):
        """The caller's first look for call ``key`` misses it, as a caller paused before
        another owner made the call (and destroyed the agent) would."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key: str | None = key
            self.fails_once = False

        async def meta_get(self, table: str, key: str) -> Any:
            if table == "executions" and key == self.key and self.fails_once:
                self.key = None
                return None
            return await super().meta_get(table, key)

    store = FirstLookMisses("s.box-0/whoami-1@s.main")
    box = container_app()
    app = perper.App("stale")
    answers: list[Any] = []

    @app.launcher
    async def main(ctx: perper.Context) -> None:
        agent = await ctx.start_agent(box, "a")
        answers.append(await agent.call("whoami", 1))
        await agent.destroy()
        if len(answers) == 1:
            raise RuntimeError("fails once, after the destroy")

    assert not (await Runtime(store, app).run("s")).ok
    store.fails_once = True  # the re-run caller misses the call at first, then finds it
    result = await Runtime(store, app).run("s")
    assert result.ok, str(result)
    assert store.key is None  # the miss happened
    assert answers[0] == answers[1]
