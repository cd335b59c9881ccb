"""Recorded effects: ids, timestamps and random sampling that replay exactly.

``orders`` makes up orders with a random id (``ctx.uuid()``), a random amount
(``ctx.random()``) and a timestamp (``ctx.now()``); ``sampler`` keeps a random share of
them and stamps when it saw each. Every value comes from the context, which records it
the first time, so recovery and ``perper replay`` hand back the very same values.

    perper run examples/effects.py --param count=20 --param rate=0.5
"""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("effects")


@app.stream
async def orders(ctx: perper.Context, count: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(count):
        yield {
            "order": i,
            "id": str(ctx.uuid()),
            "amount": round(ctx.random() * 100, 2),
            "at": ctx.now(),
        }


@app.stream
async def sampler(
    ctx: perper.Context, source: perper.StreamRef, rate: float
) -> AsyncIterator[dict[str, Any]]:
    async for order in ctx.read(source):
        if ctx.random() < rate:
            yield {"order": order["order"], "id": order["id"], "seen_at": ctx.now()}


@app.action
async def audit(ctx: perper.Context, source: perper.StreamRef) -> None:
    async for sample in ctx.read(source):
        ctx.log.info("sampled order %s (%s)", sample["order"], sample["id"])


@app.launcher
async def main(ctx: perper.Context, count: int = 20, rate: float = 0.5) -> None:
    placed = await ctx.start(orders, count=count)
    sampled = await ctx.start(sampler, placed, rate=rate)
    await ctx.start(audit, sampled)
