"""The store contract's indexed streams: declarations, index rows and queries, on every
store (memory, SQLite, and Ignite when a node is up)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import perper
from perper.errors import ConfigError
from perper.store import LogStore, open_store
from perper.store.readonly import ReadOnlyStore
from perper.store.sqlite import APPLICATION_ID, SQLiteStore
from tests.conftest import ROOT, STORE_KINDS, store_url

ORDERS = "shop/orders"
INDEX = {"user": int, "amount": float, "page": str, "paid": bool, "tag": bytes}


@perper.codec.register(name="QueryOrder")
@dataclasses.dataclass
class Order:
    user: int
    amount: float


def order(i: int) -> dict[str, Any]:
    return {"user": i % 5, "amount": float(i), "page": f"/p{i % 3}", "paid": i % 2 == 0}


async def rows(store: LogStore, where: str, params: list[Any] | None = None, **kw: Any) -> list:
    return [row async for row in store.query(ORDERS, where, params, **kw)]


async def test_a_point_query_returns_exactly_the_matching_items_in_seq_order(
    store: LogStore,
) -> None:
    await store.declare_index(ORDERS, INDEX)
    await store.append(ORDERS, 0, [order(i) for i in range(20)])
    await store.append(ORDERS, 20, [order(i) for i in range(20, 30)])
    found = await rows(store, "user = ?", [3])
    assert found == [(i, order(i)) for i in range(30) if i % 5 == 3]
    both = await rows(store, "user = ? AND amount > ?", [3, 10.0])
    assert [seq for seq, _ in both] == [13, 18, 23, 28]


async def test_items_stored_before_the_declaration_are_indexed_too(store: LogStore) -> None:
    await store.append(ORDERS, 0, [order(i) for i in range(10)])
    await store.declare_index(ORDERS, {"user": int})
    await store.append(ORDERS, 10, [order(i) for i in range(10, 15)])
    assert [seq for seq, _ in await rows(store, "user = 1")] == [1, 6, 11]


async def test_a_missing_field_is_null_and_every_declared_type_is_queryable(
    store: LogStore,
) -> None:
    await store.declare_index(ORDERS, INDEX)
    items = [
        {"user": 1, "page": "/a", "paid": True, "tag": b"\x00x"},
        {"amount": 2.5},
        {"user": 2, "amount": 3},  # an int for a float field is stored as a float
    ]
    await store.append(ORDERS, 0, items)
    assert [s for s, _ in await rows(store, "user IS NULL")] == [1]
    assert [s for s, _ in await rows(store, "amount = ?", [3.0])] == [2]
    assert [s for s, _ in await rows(store, "paid = ?", [True])] == [0]
    assert [s for s, _ in await rows(store, "tag = ?", [b"\x00x"])] == [0]
    assert [s for s, _ in await rows(store, "page LIKE ?", ["/%"])] == [0]


async def test_dataclass_items_are_indexed_by_their_attributes(store: LogStore) -> None:
    await store.declare_index(ORDERS, {"user": int, "amount": float})
    await store.append(ORDERS, 0, [Order(1, 1.0), Order(2, 2.0), Order(1, 3.0)])
    assert await rows(store, "user = ?", [1]) == [(0, Order(1, 1.0)), (2, Order(1, 3.0))]


async def test_stop_order_by_and_limit_select_and_order_the_rows(store: LogStore) -> None:
    await store.declare_index(ORDERS, INDEX)
    await store.append(ORDERS, 0, [order(i) for i in range(30)])
    assert [s for s, _ in await rows(store, "user = 0", stop=12)] == [0, 5, 10]
    by_amount = await rows(store, "user = 0", order_by="amount DESC", limit=2)
    assert [s for s, _ in by_amount] == [25, 20]
    ties = await rows(store, "seq < 6", order_by="page")
    assert [s for s, _ in ties] == [0, 3, 1, 4, 2, 5]  # ties in seq order
    assert await rows(store, "1", limit=0) == []


@pytest.mark.parametrize(
    ("where", "params", "message"),
    [
        (
            "customer = ?",
            [1],
            "names 'customer', which is not an indexed field; the indexed "
            "fields are seq, user, amount, page, paid, tag",
        ),
        ("user = ?; DELETE FROM segments", [1], "a second statement"),
        ("user IN (SELECT seq FROM segments)", [], "a subquery"),
        ("user = = 1", [], "not a valid SQL condition"),
        ("user = ?", [], "pass one value in params per '?'"),
        ("user = :who", [1], "named or numbered parameter"),
        ("hex(page) = '00'", [], "the function hex()"),
        ("user = ?", [[1]], "parameter [1] is a list"),
    ],
)
async def test_a_bad_condition_is_a_config_error_naming_what_is_wrong(
    store: LogStore, where: str, params: list[Any], message: str
) -> None:
    await store.declare_index(ORDERS, INDEX)
    await store.append(ORDERS, 0, [order(0)])
    with pytest.raises(ConfigError, match=re.escape(message)):
        await rows(store, where, params)


async def test_a_bad_order_or_limit_and_an_unindexed_stream_are_refused(
    store: LogStore,
) -> None:
    await store.append("plain", 0, [1])
    with pytest.raises(ConfigError, match="'plain' .* is not indexed"):
        [r async for r in store.query("plain", "1", [])]
    await store.declare_index(ORDERS, INDEX)
    with pytest.raises(ConfigError, match="'customer' is not a field"):
        await rows(store, "1", order_by="customer")
    with pytest.raises(ConfigError, match="limit=-1"):
        await rows(store, "1", limit=-1)


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ({"user": list}, "index fields are one of int, float, str, bool, bytes"),
        ({"bad name": int}, "is not usable"),
        ({"seq": int}, "other than 'seq'"),
        ({}, "non-empty dict"),
    ],
)
async def test_a_bad_declaration_is_a_config_error(
    store: LogStore, index: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        await store.declare_index(ORDERS, index)


async def test_declaring_again_is_a_no_op_and_another_index_is_refused(store: LogStore) -> None:
    await store.declare_index(ORDERS, {"user": int})
    await store.declare_index(ORDERS, {"user": int})
    with pytest.raises(ConfigError, match=r"indexed on \(user int\); another writer declares"):
        await store.declare_index(ORDERS, {"user": str})
    assert await store.indexes() == {ORDERS: (("user", "int"),)}
    assert await store.index_of("other") is None


async def test_an_item_holding_another_type_than_its_field_is_refused_and_not_stored(
    store: LogStore,
) -> None:
    await store.declare_index(ORDERS, {"user": int})
    with pytest.raises(ConfigError, match="'user' is declared int but the item holds 'x'"):
        await store.append(ORDERS, 0, [{"user": 1}, {"user": "x"}])
    assert await store.head(ORDERS) == 0


async def test_keyed_appends_index_their_items(store: LogStore) -> None:
    async with perper.Producer(store, ORDERS, index={"user": int}) as producer:
        await producer.send_many([order(i) for i in range(6)], keys=[str(i) for i in range(6)])
        await producer.send_many([order(i) for i in range(6)], keys=[str(i) for i in range(6)])
    assert [s for s, _ in await rows(store, "user = 1")] == [1]


async def test_a_read_only_view_queries_and_refuses_declaring(store: LogStore) -> None:
    await store.declare_index(ORDERS, {"user": int})
    await store.append(ORDERS, 0, [order(i) for i in range(6)])
    view = ReadOnlyStore(store, owned=False)
    assert [s async for s, _ in view.query(ORDERS, "user = 1")] == [1]
    assert await view.indexes() == await store.indexes()
    with pytest.raises(perper.StoreError, match="read-only"):
        await view.declare_index("new", {"user": int})


async def test_the_declaration_and_rows_are_durable_across_reopening(tmp_path: Path) -> None:
    url = store_url("sqlite", tmp_path)
    async with open_store(url) as store:
        await store.declare_index(ORDERS, {"user": int})
        await store.append(ORDERS, 0, [order(i) for i in range(10)])
    async with open_store(url) as store:
        assert await store.index_of(ORDERS) == (("user", "int"),)
        await store.append(ORDERS, 10, [order(10)])
        assert [s for s, _ in await rows(store, "user = 0")] == [0, 5, 10]


async def test_a_changed_byte_in_a_matching_item_is_reported_as_corruption(
    tmp_path: Path,
) -> None:
    url = store_url("sqlite", tmp_path)
    async with open_store(url) as store:
        await store.declare_index(ORDERS, {"user": int})
        await store.append(ORDERS, 0, [order(i) for i in range(10)])
    db = sqlite3.connect(tmp_path / "store.db")
    (data,) = db.execute("SELECT data FROM segments").fetchone()
    # The page of seq 6 (a match of user = 1), "/p0", becomes "/p1": still valid msgpack.
    at = data.index(b"/p0", data.index(b"/p0", data.index(b"/p0") + 1) + 1)
    assert data.count(b"/p0") == 4 and at == data.rindex(b"/p0", 0, data.rindex(b"/p0"))
    db.execute("UPDATE segments SET data = ?", (data[: at + 2] + b"1" + data[at + 3 :],))
    db.commit()
    db.close()
    async with open_store(url) as store:
        assert [seq for seq, _ in await rows(store, "user = 2")] == [2, 7]  # untouched items
        with pytest.raises(perper.FormatError, match="does not match its checksum"):
            await rows(store, "user = 1")


async def test_a_format_3_log_opened_for_writing_is_upgraded_and_can_be_indexed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    shutil.copy(ROOT / "fixtures" / "basic-clean.db", path)
    async with SQLiteStore(path) as store:
        name = (await store.streams())[0].name
        await store.declare_index(name, {"value": int})
        assert await store.index_of(name) == (("value", "int"),)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 5


def format_4_indexed_log(path: Path) -> None:
    """A format 4 log as that perper wrote it: an index table keyed by seq with one
    ``(field, seq)`` index per field and no bucket or check column."""
    from perper.store.base import encode_segment

    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            head INTEGER NOT NULL DEFAULT 0, sealed INTEGER NOT NULL DEFAULT 0,
            epoch INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE segments (stream_id INTEGER NOT NULL, first_seq INTEGER NOT NULL,
            count INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (stream_id, first_seq));
        CREATE TABLE stream_indexes (stream_id INTEGER PRIMARY KEY, fields TEXT NOT NULL);
        CREATE TABLE stream_index_1 (seq INTEGER PRIMARY KEY, "user" INTEGER,
            perper_locator INTEGER);
        CREATE INDEX stream_index_1_user ON stream_index_1 ("user", seq);
        """
    )
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    for table in ("runs", "executions", "checkpoints", "leases"):
        db.execute(
            f"CREATE TABLE {table} (key TEXT PRIMARY KEY, version INTEGER NOT NULL, "
            "value BLOB NOT NULL)"
        )
    db.execute("INSERT INTO streams (id, name, head) VALUES (1, ?, 10)", (ORDERS,))
    data = encode_segment([order(i) for i in range(10)])
    db.execute("INSERT INTO segments VALUES (1, 0, 10, ?)", (data,))
    db.execute('INSERT INTO stream_indexes VALUES (1, \'[["user", "int"]]\')')
    db.executemany(
        "INSERT INTO stream_index_1 VALUES (?, ?, NULL)", [(i, i % 5) for i in range(10)]
    )
    db.execute("PRAGMA user_version = 4")
    db.close()


async def test_a_format_4_log_is_queried_read_only_and_upgraded_to_5_for_writing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    format_4_indexed_log(path)
    async with SQLiteStore(path, read_only=True) as old:
        assert [seq async for seq, _ in old.query(ORDERS, "user = 1")] == [1, 6]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4
    async with SQLiteStore(path) as store:
        await store.append(ORDERS, 10, [order(i) for i in range(10, 15)])
        assert await rows(store, "user = 1") == [(i, order(i)) for i in (1, 6, 11)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 5
    columns = [row[1] for row in db.execute("PRAGMA table_xinfo(stream_index_1)")]
    assert columns == ["seq", "perper_bucket", "user", "perper_locator", "perper_check"]
    assert (
        db.execute("SELECT count(*) FROM stream_index_1 WHERE perper_check IS NULL").fetchone()[0]
        == 0
    )


@pytest.mark.ignite
async def test_ignite_segments_stored_without_their_rows_are_indexed_by_the_next_query(
    tmp_path: Path,
) -> None:
    if "ignite" not in STORE_KINDS:
        pytest.fail("set PERPER_TEST_IGNITE to run the Ignite tests")
    url = store_url("ignite", tmp_path)
    async with open_store(url) as declarer, open_store(url) as unaware:
        await declarer.declare_index(ORDERS, {"user": int})
        await declarer.append(ORDERS, 0, [order(i) for i in range(10)])
        # Another process's writer that never learnt the declaration writes segments
        # without rows: what a crash between a segment and its rows leaves.
        await unaware.append(ORDERS, 10, [order(i) for i in range(10, 20)])
        assert [s async for s, _ in declarer.query(ORDERS, "user = 1")] == [1, 6, 11, 16]
        await declarer.append(ORDERS, 20, [order(i) for i in range(20, 25)])
        assert [s async for s, _ in unaware.query(ORDERS, "user = 1")] == [1, 6, 11, 16, 21]


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_an_indexed_append_to_a_long_stream_writes_a_few_pages_not_one_per_item(
    tmp_path: Path,
) -> None:
    # Format 4's (field, seq) indexes took each row at a random place, so one commit of
    # 1,000 items wrote hundreds of scattered index pages; bucketed ones write a few dozen.
    path = tmp_path / "store.db"
    users = [(i * 7919) % 10_000 for i in range(61_000)]
    async with SQLiteStore(path) as store:
        await store.declare_index(ORDERS, {"user": int, "amount": float})
        for first in range(0, 60_000, 1000):
            batch = [
                {"user": users[i], "amount": float(i % 997)} for i in range(first, first + 1000)
            ]
            await store.append(ORDERS, first, batch)
        side = sqlite3.connect(path)
        side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        assert _size(wal) == 0
        batch = [{"user": users[i], "amount": float(i % 997)} for i in range(60_000, 61_000)]
        await store.append(ORDERS, 60_000, batch)
        frames = _size(wal) // (4096 + 24)
        side.close()
        assert [seq async for seq, _ in store.query(ORDERS, "user = ?", [users[60_500]])][
            -1
        ] == 60_500
    # About 50: the segment (24 KiB), the rows (7 pages of the table), the pages of the
    # newest bucket in each index; format 4's layout wrote 471 here.
    assert frames < 100, f"one indexed append of 1,000 items wrote {frames} pages"


async def test_items_holding_maps_with_int_keys_are_located_and_returned_exactly(
    tmp_path: Path,
) -> None:
    # ormsgpack refuses int keys without an option: encoding the items one by one for
    # their locators falls back to the per-item path, and still finds every item's bytes.
    path = tmp_path / "store.db"
    items = [{"user": i % 2, "by_day": {i: f"day {i}", -1: None}} for i in range(6)]
    async with SQLiteStore(path) as store:
        await store.declare_index(ORDERS, {"user": int})
        await store.append(ORDERS, 0, items)
        assert await rows(store, "user = 1") == [(i, items[i]) for i in (1, 3, 5)]
    table = sqlite3.connect(path).execute("SELECT perper_locator FROM stream_index_1").fetchall()
    assert len(table) == 6 and all(locator is not None for (locator,) in table)
