"""Example (b): start two container agents, make 127 calls routed by a bit pattern,
check every answer, destroy both.

    perper run examples/agents/usage.py --run usage-1

prints ``127 calls answered correctly (63 by container 0, 64 by container 1)`` and
``destroyed 2 containers``.
"""

from __future__ import annotations

import asyncio

from container import app as container

import perper

app = perper.App("usage")

CALLS = 127


def route(i: int) -> int:
    """Which container answers call ``i``: the parity of its bit pattern's ones."""
    return bin(i).count("1") % 2


@app.action
async def report(ctx: perper.Context, lines: list[str]) -> None:
    for line in lines:
        print(line, flush=True)


@app.launcher
async def main(ctx: perper.Context) -> None:
    boxes = [await ctx.start_agent(container), await ctx.start_agent(container)]
    answers = await asyncio.gather(*(boxes[route(i)].call("test", i) for i in range(1, CALLS + 1)))
    ids: list[set[str]] = [set(), set()]
    for i, (ident, x) in zip(range(1, CALLS + 1), answers, strict=True):
        if x != i:
            raise AssertionError(f"call {i} was answered for {x}")
        ids[route(i)].add(ident)
    if len(ids[0]) != 1 or len(ids[1]) != 1 or ids[0] == ids[1]:
        raise AssertionError(f"containers answered with ids {ids}")
    counts = [sum(1 for i in range(1, CALLS + 1) if route(i) == b) for b in (0, 1)]
    for box in boxes:
        await box.destroy()
    try:
        await boxes[0].call("test", 0)
    except perper.AgentDestroyedError:
        destroyed = True
    else:
        destroyed = False
    assert destroyed
    await ctx.start(
        report,
        [
            f"{CALLS} calls answered correctly "
            f"({counts[0]} by container 0, {counts[1]} by container 1)",
            f"destroyed {len(boxes)} containers",
        ],
    )
