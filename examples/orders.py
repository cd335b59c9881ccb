"""Indexed streams: order events indexed on (user, amount), queried with SQL.

perper run examples/orders.py --run run --param count=1000000
perper query run/orders-0 "user = ?" --param 4242
perper streams cat run/top-1
"""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("orders")


@app.stream(index={"user": int, "amount": float})
async def orders(ctx: perper.Context, count: int, users: int) -> AsyncIterator[Any]:
    batch: list[dict[str, Any]] = []
    for i in range(count):
        batch.append({"user": (i * 7919) % users, "amount": float(i % 1000), "order": i})
        if len(batch) == 1000:
            yield perper.Batch(batch)
            batch = []
    if batch:
        yield perper.Batch(batch)


@app.stream
async def top(ctx: perper.Context, source: perper.StreamRef, user: int) -> AsyncIterator[Any]:
    """The three largest orders of ``user``, once ``source`` is complete."""
    async for _ in ctx.read_batches(source):
        pass
    async for seq, item in ctx.query(source, "user = ?", [user], order_by="amount DESC", limit=3):
        yield {"seq": seq, "amount": item["amount"]}


@app.launcher
async def main(ctx: perper.Context, count: int = 10_000, users: int = 10_000) -> None:
    source = await ctx.start(orders, count=count, users=users)
    await ctx.start(top, source, user=4242)
