"""A run with an ingest stream that no function reads (``r/notes``, sealed): its launcher
finishes long before a producer could have sent everything."""

import perper

app = perper.App("unread_ingest")


@app.stream
async def doubled(ctx: perper.Context, count: int):  # type: ignore[no-untyped-def]
    for i in range(count):
        yield i * 2


@app.launcher
async def main(ctx: perper.Context, count: int = 3) -> None:
    await ctx.start(doubled, count)
