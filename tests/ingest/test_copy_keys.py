"""Exported and mirrored ingest streams keep their idempotency keys, so they still dedup."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.store import LogStore, open_store
from perper.store.flat import flat_table_name
from perper.store.mirror import copy_store
from tests.conftest import ROOT

STREAM = "r/clicks"


def sqlite_url(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


async def feed(store: LogStore) -> list[int]:
    """Keyed sends in several segments, one unkeyed send among them; returns their seqs."""
    async with perper.Producer(store, STREAM) as clicks:
        seqs = await clicks.send_many(
            [{"n": n} for n in range(10)], keys=[f"k{n}" for n in range(10)]
        )
        seqs.append(await clicks.send({"n": "loose"}))
        seqs += await clicks.send_many(
            [{"n": n} for n in range(10, 15)], keys=[f"k{n}" for n in range(10, 15)]
        )
    return seqs


async def resend_everything(store: LogStore) -> tuple[list[int], int]:
    """Every keyed send of :func:`feed` again, then one new key: (their seqs, new head)."""
    async with perper.Producer(store, STREAM) as clicks:
        seqs = await clicks.send_many([{"n": "again"}] * 15, keys=[f"k{n}" for n in range(15)])
        seqs.append(await clicks.send({"n": "new"}, key="k-new"))
    return seqs, await store.head(STREAM)


def export(url: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perper.cli", "export", url, str(dest)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip


async def items(store: LogStore) -> list[Any]:
    return [item async for _, item in store.read(STREAM)]


async def test_segment_keys_gives_the_keyed_segments_overlapping_a_range(store: LogStore) -> None:
    await feed(store)
    tail = [f"k{n}" for n in range(10, 15)]
    assert await store.segment_keys(STREAM) == [(0, [f"k{n}" for n in range(10)]), (11, tail)]
    assert await store.segment_keys(STREAM, 9, 11) == [(0, [f"k{n}" for n in range(10)])]
    assert await store.segment_keys(STREAM, 10, 12) == [(11, tail)]
    assert await store.segment_keys(STREAM, 16) == []
    assert await store.segment_keys("r/never-written") == []


async def test_a_copied_ingest_stream_returns_the_stored_seq_for_a_key_it_holds(
    tmp_path: Path,
) -> None:
    async with (
        open_store(sqlite_url(tmp_path, "src.db")) as src,
        open_store(sqlite_url(tmp_path, "dest.db")) as dest,
    ):
        sent = await feed(src)
        await copy_store(src, dest)
        assert await dest.segment_keys(STREAM) == await src.segment_keys(STREAM)
    # A new process on the copy: its keys come from the file, not from a cache.
    async with open_store(sqlite_url(tmp_path, "dest.db")) as copy:
        seqs, head = await resend_everything(copy)
        assert seqs == [s for s in sent if s != 10] + [16]
        assert head == 17
        assert (await items(copy))[-1] == {"n": "new"}


async def test_a_copy_whose_head_falls_inside_a_keyed_segment_copies_the_tails_keys(
    tmp_path: Path,
) -> None:
    async with (
        open_store(sqlite_url(tmp_path, "src.db")) as src,
        open_store(sqlite_url(tmp_path, "dest.db")) as dest,
    ):
        await feed(src)
        # The destination holds the first four items already, written without keys.
        await dest.append(STREAM, 0, (await items(src))[:4])
        await copy_store(src, dest)
        assert await items(dest) == await items(src)
        async with perper.Producer(dest, STREAM) as clicks:
            assert await clicks.send("again", key="k7") == 7
            assert await clicks.send("again", key="k14") == 15
        assert await dest.head(STREAM) == 16


async def test_the_export_command_keeps_the_keys_of_ingest_streams(tmp_path: Path) -> None:
    async with open_store(sqlite_url(tmp_path, "src.db")) as src:
        sent = await feed(src)
    result = export(sqlite_url(tmp_path, "src.db"), tmp_path / "out.sqlite")
    assert result.returncode == 0, result.stderr
    async with open_store(sqlite_url(tmp_path, "out.sqlite")) as exported:
        seqs, head = await resend_everything(exported)
    assert seqs == [s for s in sent if s != 10] + [16]
    assert head == 17


def test_a_stream_named_like_the_keys_table_gets_its_own_flat_table() -> None:
    assert flat_table_name("segment_keys") == "stream:segment_keys"


@pytest.mark.ignite
async def test_keys_survive_a_mirror_into_ignite_and_an_export_back_out(tmp_path: Path) -> None:
    node = os.environ.get("PERPER_TEST_IGNITE")
    if not node:
        pytest.fail("PERPER_TEST_IGNITE is not set: start a node and export its ignite:// URL")
    ignite = f"{node}?namespace=copy-keys-{uuid.uuid4().hex}"
    async with (
        open_store(sqlite_url(tmp_path, "src.db")) as src,
        open_store(ignite) as middle,
        open_store(sqlite_url(tmp_path, "back.db")) as back,
    ):
        sent = await feed(src)
        await copy_store(src, middle)
        await copy_store(middle, back)
        assert await back.segment_keys(STREAM) == await src.segment_keys(STREAM)
    async with open_store(ignite) as fresh:  # a new client: keys read from the node
        seqs, head = await resend_everything(fresh)
        assert seqs == [s for s in sent if s != 10] + [16]
        assert head == 17
    async with open_store(sqlite_url(tmp_path, "back.db")) as copy:
        assert (await resend_everything(copy))[1] == 17
