"""Processing-time logic: a session ends when 30 s pass between two clicks (ctx.now())."""

import perper

app = perper.App("sessions")


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def sessions(ctx: perper.Context, clicks: perper.StreamRef):
    async for _click in ctx.read(clicks):
        now = ctx.now()
        last = ctx.state.get("last")
        if last is not None and now - last > 30:
            yield {"ended": ctx.state["count"]}
            ctx.state["count"] = 0
        ctx.state["last"] = now
        ctx.state["count"] = ctx.state.get("count", 0) + 1


@app.stream(recovery="checkpoint", checkpoint_every=1)
async def forgetful_sessions(ctx: perper.Context, clicks: perper.StreamRef):
    last = None  # kept in a local variable: lost on a crash
    async for click in ctx.read(clicks):
        now = ctx.now()
        if last is not None and now - last > 30:
            yield {"gap_after": click}
        last = now


@app.launcher
async def main(ctx: perper.Context, clicks: perper.StreamRef):
    await ctx.start(sessions, clicks)
