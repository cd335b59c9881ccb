"""Destroying streams: ctx.destroy inside a run, perper streams rm from outside."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import perper
from perper import codec
from perper.errors import ConfigError
from perper.runtime import Runtime, RuntimeSettings
from perper.runtime.destroy import destroy_stream
from perper.runtime.records import ExecutionRecord
from perper.store import LogStore, open_store
from perper.store.memory import MemoryStore
from tests.conftest import store_url

app = perper.App("destroying")


@app.stream
async def forever(ctx: perper.Context) -> Any:
    i = 0
    while True:
        await asyncio.sleep(0)
        yield i
        i += 1


@app.launcher
async def main(ctx: perper.Context) -> None:
    ref = await ctx.start(forever)
    async for x in ctx.read(ref):
        if x >= 20:
            break
    await ctx.destroy(ref)


async def test_ctx_destroy_cancels_the_writer_deletes_its_stream_and_the_run_ends() -> None:
    store = MemoryStore()
    runtime = Runtime(store, app, settings=RuntimeSettings(batch_size=5), clock=lambda: 0.0)
    result = await asyncio.wait_for(runtime.run("r"), 30)
    assert result.status == "done", result
    entry = await store.meta_get("executions", "r/forever-0")
    assert entry is not None and entry.value["status"] == "cancelled"
    assert (await store.info("r/forever-0")).head == 0
    assert [i.name for i in await store.streams(prefix="r/forever-0")] == []
    again = await asyncio.wait_for(Runtime(store, app, clock=lambda: 0.0).run("r"), 30)
    assert again.status == "done"


def test_ctx_destroy_refuses_what_is_not_a_stream_ref() -> None:
    from perper.context import Context

    ctx = Context.__new__(Context)
    object.__setattr__(ctx, "_host", None)
    object.__setattr__(ctx, "function", "main")
    with pytest.raises(ConfigError, match="StreamRef"):
        asyncio.run(Context.destroy(ctx, "r/forever-0"))  # type: ignore[arg-type]


async def _reader_running(store: LogStore) -> None:
    """A writer (done) of r/src-0 and a running reader of it, as a run leaves them."""
    await store.append("r/src-0", 0, [1, 2, 3])
    await store.seal("r/src-0")
    writer = ExecutionRecord("r/src-0", "r", "src", "stream", codec.pack({}), "r/main")
    writer = writer.with_status(perper.runtime.records.DONE)
    reader = ExecutionRecord(
        "r/sink-1",
        "r",
        "sink",
        "action",
        codec.pack({"source": perper.StreamRef("r/src-0")}),
        "r/main",
    )
    await store.meta_put("executions", "r/src-0", writer.to_meta())
    await store.meta_put("executions", "r/sink-1", reader.to_meta())


async def test_destroying_a_stream_a_running_execution_reads_is_refused_naming_the_reader(
    store: LogStore,
) -> None:
    await _reader_running(store)
    with pytest.raises(ConfigError, match="'r/sink-1'.*--force"):
        await destroy_stream(store, "r/src-0")
    assert await store.head("r/src-0") == 3
    await destroy_stream(store, "r/src-0", force=True)
    assert await store.head("r/src-0") == 0


async def test_destroying_a_stream_that_does_not_exist_says_so(store: LogStore) -> None:
    with pytest.raises(ConfigError, match="no stream 'nope'"):
        await destroy_stream(store, "nope")


def test_perper_streams_rm_refuses_a_read_stream_unless_forced(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = store_url("sqlite", tmp_path)

    async def setup() -> None:
        async with open_store(url) as store:
            await _reader_running(store)

    asyncio.run(setup())

    def rm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "perper.cli", "streams", "rm", "r/src-0", "--store", url, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = rm()
    assert refused.returncode == 2
    assert "r/sink-1" in refused.stderr and "--force" in refused.stderr
    forced = rm("--force")
    assert forced.returncode == 0, forced.stderr

    async def check() -> tuple[int, list[str]]:
        async with open_store(url) as store:
            return await store.head("r/src-0"), [i.name for i in await store.streams()]

    assert asyncio.run(check()) == (0, [])


async def test_destroying_an_indexed_stream_deletes_its_index_and_queries_say_so() -> None:
    async with MemoryStore() as store:
        await store.declare_index("r/orders", {"user": int})
        await store.append("r/orders", 0, [{"user": 1}, {"user": 2}])
        await destroy_stream(store, "r/orders")
        assert (await store.info("r/orders")).head == 0
        assert await store.index_of("r/orders") is None
        with pytest.raises(ConfigError, match=r"no stream 'r/orders' .*destroyed"):
            _ = [seq async for seq, _ in store.query("r/orders", "user = ?", [2])]


def test_an_indexed_stream_may_be_declared_ephemeral() -> None:
    other = perper.App("indexed-ephemeral")

    @other.stream(index={"user": int}, retention="ephemeral")
    async def orders(ctx: perper.Context) -> Any:
        yield {"user": 1}

    registered = other.functions["orders"]
    assert (registered.retention, registered.index) == ("ephemeral", (("user", "int"),))
