"""check_recoverable: crash at every item boundary, recover in the declared mode, compare."""

from __future__ import annotations

import pytest

import perper
from perper.errors import ConfigError
from perper.testing.recovery import RecoveryError, check_recoverable

app = perper.App("recoverable")


@app.stream(recovery="checkpoint")
async def local_total(ctx: perper.Context, source: perper.StreamRef):
    total = 0  # memory outside ctx.state: lost when resuming from a checkpoint
    async for number in ctx.read(source):
        total += number
        yield total


@app.stream(recovery="checkpoint")
async def state_total(ctx: perper.Context, source: perper.StreamRef):
    async for number in ctx.read(source):
        ctx.state["total"] = ctx.state.get("total", 0) + number
        yield ctx.state["total"]


@app.stream
async def replayed_total(ctx: perper.Context, source: perper.StreamRef):
    total = 0  # fine in replay mode: recovery starts from the first input item
    async for number in ctx.read(source):
        total += number
        yield total


@app.stream(recovery="checkpoint")
async def concat(ctx: perper.Context, left: perper.StreamRef, right: perper.StreamRef, scale: int):
    async for a in ctx.read(left):
        yield a * scale
    async for b in ctx.read(right):
        yield b * scale


@app.stream(recovery="checkpoint")
async def pairs(ctx: perper.Context, left: perper.StreamRef, right: perper.StreamRef):
    async for a in ctx.read(left):
        ctx.state["a"] = a
        async for b in ctx.read(right):  # a new cursor per left item
            yield ctx.state["a"] + b


def test_a_local_running_total_in_checkpoint_mode_is_reported_with_the_first_diverging_seq() -> (
    None
):
    check = check_recoverable(local_total, [5, 7, 11, 13])
    assert not check.ok
    divergence = check.divergence
    assert divergence is not None
    assert (divergence.where, divergence.seq, divergence.expected, divergence.actual) == (
        "after input item 2",
        1,
        12,
        7,
    )
    text = str(check)
    assert "local_total" in text and "output seq 1 differs" in text and "ctx.state" in text
    with pytest.raises(RecoveryError, match="crashed after input item 2"):
        check.raise_on_failure()


def test_the_same_total_kept_in_ctx_state_passes_every_boundary() -> None:
    check = check_recoverable(state_total, list(range(1, 40)), raise_on_failure=True)
    # before the first item, after each of the 39, before the seal, after the seal
    assert check.ok and check.boundaries == 1 + 39 + 2 and check.output_items == 39


def test_a_local_total_is_safe_in_replay_mode() -> None:
    assert check_recoverable(replayed_total, [3, 1, 4, 1, 5, 9]).ok


def test_several_inputs_and_parameters_are_given_by_name() -> None:
    check = check_recoverable(concat, {"left": [1, 2], "right": [10, 20, 30]}, scale=2)
    assert check.ok and check.output_items == 5 and check.boundaries == 2 + 5 + 2


def test_opening_a_new_cursor_per_item_resumes_at_the_outer_read() -> None:
    # Checkpoints are taken only where every other read has ended: at the outer read's
    # items, once the inner cursor of that item is done.
    check = check_recoverable(pairs, {"left": [1, 2], "right": [10, 20, 30]})
    assert check.ok, str(check)
    assert check.output_items == 6


@app.stream(recovery="checkpoint")
async def total(ctx: perper.Context, source: perper.StreamRef):
    ctx.state.setdefault("sum", 0)
    async for x in ctx.read(source):
        ctx.state["sum"] += x
    yield ctx.state["sum"]


@app.stream(recovery="checkpoint")
async def local_sum_total(ctx: perper.Context, source: perper.StreamRef):
    running = 0  # lost when resuming from a checkpoint
    async for x in ctx.read(source):
        running += x
    yield running


@app.stream(recovery="checkpoint")
async def headed(ctx: perper.Context, source: perper.StreamRef):
    yield "header"  # before the first read: re-yielded on every resumption
    async for x in ctx.read(source):
        ctx.state["count"] = ctx.state.get("count", 0) + 1
        yield x
    yield {"count": ctx.state.get("count", 0)}


@app.stream(recovery="checkpoint")
async def until_big(ctx: perper.Context, source: perper.StreamRef):
    async for x in ctx.read(source):
        ctx.state["seen"] = ctx.state.get("seen", 0) + 1
        if x > 10:
            break
    yield ctx.state.get("seen", 0)


def test_a_total_yielded_after_the_input_loop_survives_every_crash_point() -> None:
    check = check_recoverable(total, list(range(20)), raise_on_failure=True)
    assert check.output_items == 1 and check.boundaries == 1 + 20 + 2


def test_the_total_kept_in_a_local_variable_fails_and_names_the_crash_point() -> None:
    check = check_recoverable(local_sum_total, list(range(20)))
    assert not check.ok and check.divergence is not None
    # resuming after item 2 loses 0 + 1 from the sum: the first crash point that shows
    assert check.divergence.where == "after input item 3"
    assert (check.divergence.expected, check.divergence.actual) == (190, 189)
    assert "crashed after input item 3: output seq 0 differs" in str(check)


def test_items_yielded_before_the_first_read_are_not_written_twice() -> None:
    check = check_recoverable(headed, [4, 5, 6], raise_on_failure=True)
    assert check.output_items == 5


def test_leaving_the_input_loop_early_resumes_correctly() -> None:
    check = check_recoverable(until_big, [1, 2, 30, 4, 5], raise_on_failure=True)
    assert check.output_items == 1


def test_unnamed_inputs_need_a_single_free_parameter() -> None:
    with pytest.raises(ConfigError, match="name the input streams"):
        check_recoverable(concat, [1, 2], scale=2)


def test_a_function_failing_without_crashes_is_reported_as_such() -> None:
    @app.stream(recovery="checkpoint")
    async def broken(ctx: perper.Context, source: perper.StreamRef):
        async for _ in ctx.read(source):
            raise ValueError("always")
            yield

    with pytest.raises(ConfigError, match="fails without any crash"):
        check_recoverable(broken, [1])
