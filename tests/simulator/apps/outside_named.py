"""A launcher that builds the ``StreamRef`` to a stream outside the run itself, from a
plain ``str`` parameter: only the parameters of the execution it starts name the stream."""

from collections.abc import AsyncIterator
from typing import Any

import perper

app = perper.App("outside_named")


@app.stream
async def doubled(ctx: perper.Context, source: perper.StreamRef) -> AsyncIterator[Any]:
    async for number in ctx.read(source):
        yield 2 * number


@app.launcher
async def main(ctx: perper.Context, name: str) -> None:
    await ctx.start(doubled, perper.StreamRef(name))
