"""An app whose checker fails on item 3, for the UI's traceback view."""

import perper

app = perper.App("failing")


@app.stream
async def numbers(ctx: perper.Context, count: int):
    for i in range(count):
        yield {"n": i}


@app.action
async def checker(ctx: perper.Context, source: perper.StreamRef):
    async for item in ctx.read(source):
        if item["n"] == 3:
            raise ValueError(f"checker cannot take n={item['n']}")


@app.launcher
async def main(ctx: perper.Context, count: int = 5):
    source = await ctx.start(numbers, count=count)
    await ctx.start(checker, source)
