"""Ephemeral intermediate streams under crashes: trimmed behind their readers, never ahead.

numbers (ephemeral, checkpoint mode) -> doubled (ephemeral, checkpoint mode) and
tripled (ephemeral, replay mode) -> a total of each. doubled's input is trimmed as its
readers checkpoint; tripled re-reads numbers from seq 0 on recovery, so numbers is kept
for it until it is done. Every recovery must reproduce the outputs without reading a
trimmed item.
"""

import perper

app = perper.App("ephemeral")


@app.stream(retention="ephemeral", recovery="checkpoint", checkpoint_every=3)
async def numbers(ctx: perper.Context, count: int):
    for i in range(ctx.state.setdefault("next", 0), count):
        ctx.state["next"] = i + 1
        yield i


@app.stream(retention="ephemeral", recovery="checkpoint", checkpoint_every=4)
async def doubled(ctx: perper.Context, source: perper.StreamRef):
    async for x in ctx.read(source):
        yield 2 * x


@app.stream(retention="ephemeral")
async def tripled(ctx: perper.Context, source: perper.StreamRef):
    async for x in ctx.read(source):
        yield 3 * x


@app.stream(recovery="checkpoint", checkpoint_every=5)
async def total(ctx: perper.Context, source: perper.StreamRef):
    async for x in ctx.read(source):
        ctx.state["sum"] = ctx.state.get("sum", 0) + x
        yield ctx.state["sum"]


@app.launcher
async def main(ctx: perper.Context, count: int = 40):
    source = await ctx.start(numbers, count=count)
    await ctx.start(total, await ctx.start(doubled, source))
    await ctx.start(total, await ctx.start(tripled, source))
