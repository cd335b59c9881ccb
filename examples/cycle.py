"""A cyclic graph: ping and pong feed each other's output back until a bound.

ping yields 0, then answers every number pong sends with that number + 1; pong answers
every number with that number + 1. Both stop once the numbers reach ``bound``.
``ctx.declare`` hands out ping's stream before ping can be started, because ping's input
is pong's output.

    perper run examples/cycle.py --param bound=20
"""

from collections.abc import AsyncIterator

import perper

app = perper.App("cycle")


@app.stream
async def ping(ctx: perper.Context, replies: perper.StreamRef, bound: int) -> AsyncIterator[int]:
    yield 0
    async for number in ctx.read(replies):
        if number >= bound:
            return
        yield number + 1


@app.stream
async def pong(ctx: perper.Context, pings: perper.StreamRef, bound: int) -> AsyncIterator[int]:
    async for number in ctx.read(pings):
        yield number + 1
        if number + 1 >= bound:
            return


@app.action
async def report(ctx: perper.Context, source: perper.StreamRef) -> None:
    async for number in ctx.read(source):
        ctx.log.info("pong said %s", number)


@app.launcher
async def main(ctx: perper.Context, bound: int = 10) -> None:
    ping_ref, start_ping = ctx.declare(ping)
    pong_ref = await ctx.start(pong, ping_ref, bound=bound)
    await start_ping(pong_ref, bound=bound)
    await ctx.start(report, pong_ref)
