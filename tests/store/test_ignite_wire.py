"""The Ignite store's own encoding of its hot requests (perper/store/ignite/wire.py).

Without a node: every request is byte for byte what pyignite sends for the same call, and
every canned response decodes to what pyignite makes of it. With a node: values written one
way read back the other way.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("pyignite")

from pyignite import AioClient, Client
from pyignite.api import key_value
from pyignite.connection.bitmask_feature import BitmaskFeature
from pyignite.connection.protocol_context import ProtocolContext
from pyignite.datatypes import String
from pyignite.exceptions import CacheError
from pyignite.queries.cache_info import CacheInfo

from perper.errors import FormatError
from perper.store.ignite import SEGMENTS_CACHE
from perper.store.ignite.wire import Requests

CACHE_ID = -123456
KEY = "ns|s|strëam/ä|7"  # a UTF-8 key longer in bytes than in characters
PROTOCOLS = [(1, 7, 0), (1, 3, 0)]  # with status flags, and before them


def _obj(kind: int, data: bytes) -> bytes:
    return struct.pack("<Bi", kind, len(data)) + data


def _response(
    protocol: tuple[int, int, int], payload: bytes, *, error: str | None = None, topology: bool
) -> Callable[[bytes], bytes]:
    """A canned answer to whichever request arrives (its id echoed)."""

    def answer(request: bytes) -> bytes:
        (request_id,) = struct.unpack_from("<q", request, 6)
        if protocol >= (1, 4, 0):
            flags = (1 if error is not None else 0) | (2 if topology else 0)
            head = struct.pack("<qh", request_id, flags)
            if topology:
                head += struct.pack("<qi", 9, 2)
            if error is not None:
                head += struct.pack("<i", 1000)
        else:
            head = struct.pack("<qi", request_id, 1000 if error is not None else 0)
        body = _obj(9, error.encode()) if error is not None else payload
        return struct.pack("<i", len(head) + len(body)) + head + body

    return answer


class _PyigniteConnection:
    """What pyignite's sync API functions need of a connection: it records the request."""

    def __init__(self, protocol: tuple[int, int, int], answer: Callable[[bytes], bytes]) -> None:
        self.client = Client()
        self.protocol_context = ProtocolContext(protocol, BitmaskFeature.all_supported())
        self.client.protocol_context = self.protocol_context
        self.host, self.port, self.uuid = "127.0.0.1", 0, None
        self.answer = answer
        self.sent: list[bytes] = []

    def request(self, data: bytes) -> bytes:
        self.sent.append(bytes(data))
        return self.answer(bytes(data))


class _Node:
    """What Requests needs of a pyignite AioConnection."""

    def __init__(self, protocol: tuple[int, int, int], answer: Callable[[bytes], bytes]) -> None:
        self.protocol_context = ProtocolContext(protocol, BitmaskFeature.all_supported())
        self.answer = answer
        self.sent: list[bytes] = []

    async def request(self, request_id: int, data: bytes) -> bytearray:
        assert struct.unpack_from("<q", data, 6)[0] == request_id
        self.sent.append(bytes(data))
        return bytearray(self.answer(bytes(data)))


class _Client:
    partition_aware = False

    def __init__(self, node: _Node) -> None:
        self.node = node
        self.affinity_version = (0, 0)

    async def random_node(self) -> _Node:
        return self.node


class _Cache:
    def __init__(self) -> None:
        self.cache_info = CacheInfo(cache_id=CACHE_ID, protocol_context=None)


#: (name, what Requests is asked, what pyignite is asked, payload of the answer)
CALLS: list[tuple[str, Callable[[Requests], Any], Callable[[Any, CacheInfo], Any], bytes]] = [
    (
        "get",
        lambda r: r.get(KEY),
        lambda c, i: key_value.cache_get(c, i, KEY, String),
        _obj(12, b"segment\x00bytes"),
    ),
    ("get absent", lambda r: r.get(KEY), lambda c, i: key_value.cache_get(c, i, KEY), b"\x65"),
    (
        "get_all",
        lambda r: r.get_all([KEY, "b", ""]),
        lambda c, i: key_value.cache_get_all(c, i, [KEY, "b", ""]),
        struct.pack("<i", 2) + _obj(9, KEY.encode()) + _obj(12, b"v1") + _obj(9, b"") + b"\x65",
    ),
    (
        "put",
        lambda r: r.put(KEY, b"\x01\x02"),
        lambda c, i: key_value.cache_put(c, i, KEY, b"\x01\x02", String),
        b"",
    ),
    (
        "put_if_absent",
        lambda r: r.put_if_absent(KEY, b"x" * 300),
        lambda c, i: key_value.cache_put_if_absent(c, i, KEY, b"x" * 300, String),
        b"\x01",
    ),
    (
        "put_if_absent of an empty value, refused",
        lambda r: r.put_if_absent(KEY, b""),
        lambda c, i: key_value.cache_put_if_absent(c, i, KEY, b"", String),
        b"\x00",
    ),
    (
        "replace_if_equals",
        lambda r: r.replace_if_equals(KEY, b"old", b"new!"),
        lambda c, i: key_value.cache_replace_if_equals(c, i, KEY, b"old", b"new!", String),
        b"\x01",
    ),
]


def _same_id(theirs: bytes, ours: bytes) -> bytes:
    return theirs[:6] + ours[6:14] + theirs[14:]


@pytest.mark.parametrize(
    ("protocol", "topology"),
    [((1, 7, 0), False), ((1, 7, 0), True), ((1, 3, 0), False)],  # no flags before 1.4
    ids=["1.7", "1.7-topology-changed", "1.3"],
)
@pytest.mark.parametrize("call", CALLS, ids=[c[0] for c in CALLS])
async def test_each_hot_request_is_sent_and_answered_exactly_as_pyignite_does(
    call: tuple[str, Any, Any, bytes], protocol: tuple[int, int, int], topology: bool
) -> None:
    _, ours, theirs, payload = call
    answer = _response(protocol, payload, topology=topology)
    pyignite = _PyigniteConnection(protocol, answer)
    info = CacheInfo(cache_id=CACHE_ID, protocol_context=pyignite.protocol_context)
    expected = theirs(pyignite, info)
    node = _Node(protocol, answer)
    client = _Client(node)
    got = await ours(Requests(client, _Cache()))
    assert node.sent[0] == _same_id(pyignite.sent[0], node.sent[0])
    value = expected.value
    if isinstance(value, dict):
        value = dict(value)
    assert got == value
    assert client.affinity_version == ((9, 2) if topology else (0, 0))


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=["1.7", "1.3"])
async def test_an_error_answer_raises_cache_error_with_the_clusters_message(
    protocol: tuple[int, int, int],
) -> None:
    answer = _response(
        protocol, b"", error="Cache does not exist [cacheId= -123456]", topology=False
    )
    requests = Requests(_Client(_Node(protocol, answer)), _Cache())
    with pytest.raises(CacheError, match=r"Cache does not exist \[cacheId= -123456\]"):
        await requests.put_if_absent(KEY, b"v")
    with pytest.raises(CacheError, match="Cache does not exist"):
        await requests.get_all(["a", "b"])


async def test_a_value_that_is_not_a_byte_array_is_reported_as_not_perpers() -> None:
    answer = _response((1, 7, 0), b"\x03" + struct.pack("<i", 42), topology=False)  # an int
    requests = Requests(_Client(_Node((1, 7, 0), answer)), _Cache())
    with pytest.raises(FormatError, match="object of type 3, not a byte array"):
        await requests.get(KEY)


NODE = os.environ.get("PERPER_TEST_IGNITE", "")


@pytest.mark.ignite
async def test_values_written_by_pyignite_read_back_through_the_store_requests_and_back() -> None:
    if not NODE:
        pytest.fail("PERPER_TEST_IGNITE is not set: start a node ('perper fabric start')")
    host, port = NODE.removeprefix("ignite://").split(",")[0].rsplit(":", 1)
    client = AioClient()
    await client.connect([(host, int(port))])
    try:
        cache = await client.get_or_create_cache(SEGMENTS_CACHE)
        requests = Requests(client, cache)
        prefix = f"wire-{uuid.uuid4().hex}|ä|"
        await cache.put(prefix + "1", b"from pyignite")
        assert await requests.get(prefix + "1") == b"from pyignite"
        assert await requests.get(prefix + "absent") is None
        assert await requests.put_if_absent(prefix + "2", b"from perper")
        assert not await requests.put_if_absent(prefix + "2", b"again")
        assert await cache.get(prefix + "2") == b"from perper"
        assert await requests.get_all([prefix + "1", prefix + "2", prefix + "absent"]) == {
            prefix + "1": b"from pyignite",
            prefix + "2": b"from perper",
        }
        assert not await requests.replace_if_equals(prefix + "2", b"stale", b"new")
        assert await requests.replace_if_equals(prefix + "2", b"from perper", b"new")
        await requests.put(prefix + "3", b"")
        assert await cache.get_all([prefix + "2", prefix + "3"]) == {
            prefix + "2": b"new",
            prefix + "3": b"",
        }
        missing = Requests(client, cache)
        missing.cache_id = 12345  # no such cache
        with pytest.raises(CacheError, match="12345"):
            await missing.get(prefix + "1")
        await cache.remove_keys([prefix + "1", prefix + "2", prefix + "3"])
    finally:
        await client.close()
