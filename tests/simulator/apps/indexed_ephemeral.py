"""An indexed ephemeral stream under crashes: its segments and index rows are trimmed behind
its reader while the reader queries it.

orders (indexed on user, ephemeral, checkpoint mode) -> picks (checkpoint mode): for each
order it reads, picks queries the first order of the same user from that seq on (the
order itself) and that user's orders in [seq, seq + 1); picks is ephemeral too, read by
a running total. Every answer depends only on the log (the rows a query
may see are recorded), so each recovery must reproduce the outputs without a trimmed
read, a stale index row or a query that answers other rows.
"""

import perper

app = perper.App("indexed_ephemeral")

USERS = 3


@app.stream(retention="ephemeral", recovery="checkpoint", checkpoint_every=3, index={"user": int})
async def orders(ctx: perper.Context, count: int):
    for i in range(ctx.state.setdefault("next", 0), count):
        ctx.state["next"] = i + 1
        yield {"user": i % USERS, "amount": i}


@app.stream(retention="ephemeral", recovery="checkpoint", checkpoint_every=4)
async def picks(ctx: perper.Context, source: perper.StreamRef):
    async for seq, order in ctx.read(source, with_seq=True):
        first = [
            [s, o["amount"]]
            async for s, o in ctx.query(
                source, "user = ? AND seq >= ?", [order["user"], seq], limit=1
            )
        ]
        ahead = [
            s
            async for s, _ in ctx.query(
                source, "user = ? AND seq >= ? AND seq < ?", [order["user"], seq, seq + 1]
            )
        ]
        yield {"seq": seq, "first": first, "ahead": ahead}


@app.stream(recovery="checkpoint", checkpoint_every=5)
async def total(ctx: perper.Context, source: perper.StreamRef):
    async for pick in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + pick["first"][0][1]
        yield ctx.state["sum"]


@app.launcher
async def main(ctx: perper.Context, count: int = 30):
    await ctx.start(total, await ctx.start(picks, await ctx.start(orders, count=count)))
