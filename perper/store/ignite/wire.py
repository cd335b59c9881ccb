"""The store's hot key-value requests, encoded and decoded here instead of by pyignite.

pyignite builds every request and response out of ctypes classes made afresh per call
(``type(...)`` for each string, byte array and response header): measured, that is most
of the Python time an append or a read spends beside the round trip itself. The store
only ever sends string keys and byte-array values, so the few requests on its hot paths
(``get``, ``get_all``, ``put``, ``put_if_absent``, ``replace_if_equals``) are written here
with :mod:`struct`, byte for byte what pyignite writes (tests/store/test_ignite_wire.py
compares them), and sent through pyignite's own connection (:meth:`AioConnection.request`:
its request ids, its routing, its reconnects). Anything else stays with pyignite.

The thin-client binary protocol: a request is ``int32 length | int16 op code | int64
request id | payload``; a response ``int32 length | int64 request id | int16 flags`` (since
protocol 1.4; before it ``int32 status``), then on a topology change ``int64 int32`` (the
new affinity version), on an error ``int32 status | string message``, else the payload.
Objects carry a type byte: 9 string (``int32 length | UTF-8``), 12 byte array
(``int32 length | bytes``), 101 null.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from pyignite.datatypes import String
from pyignite.exceptions import CacheError
from pyignite.queries.query import _get_query_id

from perper.errors import FormatError

__all__ = ["Requests"]

OP_GET = 1000
OP_PUT = 1001
OP_PUT_IF_ABSENT = 1002
OP_GET_ALL = 1003
OP_REPLACE_IF_EQUALS = 1010

TYPE_STRING = 9
TYPE_BYTES = 12
TYPE_NULL = 101

_FLAG_ERROR = 1
_FLAG_TOPOLOGY_CHANGED = 2

# length, op code, request id, cache id, cache flags (no transaction, no expiry policy)
_REQUEST = struct.Struct("<ihqiB")
_OBJECT = struct.Struct("<Bi")  # type byte, length (strings and byte arrays)
_COUNT = struct.Struct("<i")
_FLAGS_HEADER = struct.Struct("<iqh")  # length, request id, flags
_STATUS_HEADER = struct.Struct("<iqi")  # length, request id, status (protocol < 1.4)
_AFFINITY = struct.Struct("<qi")


def _string(text: str) -> bytes:
    data = text.encode()
    return _OBJECT.pack(TYPE_STRING, len(data)) + data


def _bytes(data: bytes) -> tuple[bytes, bytes]:
    """A byte-array object as two parts (its header, the bytes), so ``data`` is copied
    only once, into the request."""
    return _OBJECT.pack(TYPE_BYTES, len(data)), data


def encode(op: int, request_id: int, cache_id: int, *parts: bytes) -> bytes:
    """One request: header, cache id and flags, then the encoded ``parts``."""
    length = _REQUEST.size - 4 + sum(map(len, parts))
    return b"".join((_REQUEST.pack(length, op, request_id, cache_id, 0), *parts))


def payload_offset(client: Any, data: bytes | bytearray, status_flags: bool) -> int:
    """Where the payload of response ``data`` starts; raises CacheError for an error
    response, and takes in a changed affinity version as pyignite would."""
    if status_flags:
        _, _, flags = _FLAGS_HEADER.unpack_from(data)
        at = _FLAGS_HEADER.size
        if flags & _FLAG_TOPOLOGY_CHANGED:
            version = _AFFINITY.unpack_from(data, at)
            at += _AFFINITY.size
            if version > client.affinity_version:
                client.affinity_version = version
        if not flags & _FLAG_ERROR:
            return at
        at += 4  # the status code; the message follows
    else:
        _, _, status = _STATUS_HEADER.unpack_from(data)
        at = _STATUS_HEADER.size
        if status == 0:
            return at
    kind, length = _OBJECT.unpack_from(data, at)
    start = at + _OBJECT.size
    message = bytes(data[start : start + length]).decode(errors="replace")
    raise CacheError(message if kind == TYPE_STRING else "the cluster refused the request")


def read_object(data: bytes | bytearray, at: int) -> tuple[Any, int]:
    """The string, byte array or null at ``at`` and where the next object starts."""
    kind = data[at]
    if kind == TYPE_NULL:
        return None, at + 1
    if kind in (TYPE_BYTES, TYPE_STRING):
        (length,) = _COUNT.unpack_from(data, at + 1)
        start = at + _OBJECT.size
        view = memoryview(data)[start : start + length]  # one copy, not two
        value = str(view, "utf-8") if kind == TYPE_STRING else bytes(view)
        return value, start + length
    raise FormatError(
        f"an Ignite entry holds an object of type {kind}, not a byte array: it was not "
        "written by perper (the namespace is corrupt)"
    )


def decode_get_all(data: bytes | bytearray, at: int) -> dict[str, Any]:
    (count,) = _COUNT.unpack_from(data, at)
    at += _COUNT.size
    found = {}
    for _ in range(count):
        key, at = read_object(data, at)
        found[key], at = read_object(data, at)
    return found


class Requests:
    """The hot requests on one cache of an open ``AioClient`` (see the module docstring).

    Args:
        client: the connected ``pyignite.AioClient``.
        cache: its ``AioCache`` (for the cache id and, with partition awareness, routing).
    """

    def __init__(self, client: Any, cache: Any) -> None:
        self.client = client
        self.cache = cache
        self.cache_id: int = 0 if cache is None else cache.cache_info.cache_id
        self.partition_aware = bool(getattr(client, "partition_aware", False))

    async def _node(self, key: str | None) -> Any:
        if self.partition_aware and key is not None:
            return await self.client.get_best_node(self.cache, key, String)
        return await self.client.random_node()

    async def _send(self, op: int, key: str | None, *parts: bytes) -> tuple[bytearray, int]:
        node = await self._node(key)
        request_id = _get_query_id()
        data = await node.request(request_id, encode(op, request_id, self.cache_id, *parts))
        return data, payload_offset(
            self.client, data, node.protocol_context.is_status_flags_supported()
        )

    async def get(self, key: str) -> Any:
        data, at = await self._send(OP_GET, key, _string(key))
        return read_object(data, at)[0]

    async def get_all(self, keys: Sequence[str]) -> dict[str, Any]:
        data, at = await self._send(OP_GET_ALL, None, _COUNT.pack(len(keys)), *map(_string, keys))
        return decode_get_all(data, at)

    async def put(self, key: str, value: bytes) -> None:
        await self._send(OP_PUT, key, _string(key), *_bytes(value))

    async def put_if_absent(self, key: str, value: bytes) -> bool:
        data, at = await self._send(OP_PUT_IF_ABSENT, key, _string(key), *_bytes(value))
        return data[at] != 0

    async def replace_if_equals(self, key: str, old: bytes, new: bytes) -> bool:
        data, at = await self._send(
            OP_REPLACE_IF_EQUALS, key, _string(key), *_bytes(old), *_bytes(new)
        )
        return data[at] != 0
