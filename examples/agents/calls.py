"""Example (a): calls on one agent instance (Perper's "calls" sample).

    perper run examples/agents/calls.py --run calls-1

prints a random number in 1..100, a list of five random numbers, how many items a list
argument had and that the calls returning None returned None. Every call runs once:
rerunning the same --run makes no new call executions.
"""

from __future__ import annotations

import perper

app = perper.App("calls")


@app.call
async def random_number(ctx: perper.Context, low: int, high: int) -> int:
    return low + int(ctx.random() * (high - low + 1))


@app.call
async def random_numbers(ctx: perper.Context, count: int, low: int, high: int) -> list[int]:
    return [low + int(ctx.random() * (high - low + 1)) for _ in range(count)]


@app.call
async def count_params(ctx: perper.Context, values: list[int]) -> int:
    return len(values)


@app.call
async def do_something(ctx: perper.Context, message: str) -> None:
    ctx.log.info("do_something(%r)", message)


@app.call
async def do_something_async(ctx: perper.Context, message: str) -> None:
    ctx.log.info("do_something_async(%r)", message)


@app.action
async def report(ctx: perper.Context, lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)


@app.launcher
async def main(ctx: perper.Context) -> None:
    number = await ctx.call(random_number, 1, 100)
    assert 1 <= number <= 100
    numbers = await ctx.call(random_numbers, 5, 1, 100)
    assert len(numbers) == 5 and all(1 <= n <= 100 for n in numbers)
    counted = await ctx.call(count_params, [1, 2, 3, 4, 5, 6, 7])
    nothing = await ctx.call(do_something, "hello")
    nothing_async = await ctx.call("do_something_async", "world")
    await ctx.start(
        report,
        [
            f"random_number(1, 100) -> {number}",
            f"random_numbers(5, 1, 100) -> {numbers}",
            f"count_params([1..7]) -> {counted}",
            f"do_something('hello') -> {nothing}",
            f"do_something_async('world') -> {nothing_async}",
        ],
    )
