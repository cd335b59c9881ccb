"""The key layout of a namespace in the two Ignite caches (docs/ignite.md, "Key layout").

Segment entries: ``{ns}|s|{stream}|{n}`` -> header (kind, first seq, count, epoch) +
segment data (:func:`~perper.store.base.encode_segment`: a CRC-32, then the msgpack array;
layout 4; layout 3 had no checksum); a **keyed** segment (kind 3, written by
:class:`perper.Producer`) holds its items' idempotency keys between the two: ``uint32
length | msgpack array of keys (nil for an item without one)``, so the keys commit with
the items in one ``put_if_absent``. Hints ``{ns}|h|{stream}``, trim records ``{ns}|t|{stream}`` (ephemeral streams), metadata ``{ns}|m|{table}|{key}``,
directory buckets ``{ns}|d|{area}|{group}|{shard}``, group lists ``{ns}|g|{area}`` and the
format record ``{ns}|format``. Stream names and keys are escaped (``%`` ``|`` NUL).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from perper import codec
from perper.errors import FormatError
from perper.store.base import Meta

__all__ = [
    "DIRECTORY_SHARDS",
    "FORMAT",
    "HINT_EVERY",
    "META_CACHE",
    "SEGMENTS_CACHE",
    "Layout",
]

#: The cache of segments and hints (ATOMIC), and of metadata, directory and format (TRANSACTIONAL).
SEGMENTS_CACHE = "perper_segments"
META_CACHE = "perper_meta"
#: The key layout this package reads and writes, stored once per namespace.
FORMAT = b"perper-ignite/4"
#: A writer refreshes a stream's hint every this many segments.
HINT_EVERY = 64
#: A run's names in one directory area are spread over this many buckets (by CRC-32), so
#: adding a name rewrites a sixteenth of the run's list, and listing it is one get_all.
DIRECTORY_SHARDS = 16

HEADER = struct.Struct(">BqIq")  # kind, first seq, count, lease epoch of the writer
KIND_ITEMS = 1
KIND_SEAL = 2
KIND_KEYED = 3
KEYS_LENGTH = struct.Struct(">I")
HINT = struct.Struct(">qqq")  # segment count, head, epoch of the last segment
VERSION = struct.Struct(">q")
#: A trimmed stream's first kept segment: its number, first seq, and the lease epoch of the
#: last deleted segment (the stream's epoch if nothing is kept after it).
TRIM = struct.Struct(">qqq")

#: The directory area of stream names (metadata tables are the others).
STREAMS_AREA = "streams"

NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class Layout:
    """The keys of one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.format_key = f"{namespace}|format"
        self._segment_prefix = f"{namespace}|s|"
        self._hint_prefix = f"{namespace}|h|"
        self._meta_prefix = f"{namespace}|m|"
        self._directory_prefix = f"{namespace}|d|"
        self._groups_prefix = f"{namespace}|g|"
        self._trim_prefix = f"{namespace}|t|"

    def segment(self, stream: str, n: int) -> str:
        return f"{self._segment_prefix}{escape(stream)}|{n}"

    def meta(self, table: str, key: str) -> str:
        return f"{self._meta_prefix}{table}|{escape(key)}"

    def directory(self, area: str, group: str, shard: int) -> str:
        return f"{self._directory_prefix}{area}|{escape(group)}|{shard}"

    def groups(self, area: str) -> str:
        return self._groups_prefix + area

    def hint(self, stream: str) -> str:
        return self._hint_prefix + escape(stream)

    def trim(self, stream: str) -> str:
        """The trim record of an ephemeral stream: :data:`TRIM` (docs/retention.md)."""
        return self._trim_prefix + escape(stream)


def escape(text: str) -> str:
    """Make a stream name or metadata key safe inside an Ignite key.

    pyignite truncates strings at NUL (ctypes ``c_char`` arrays), so ``"a\\0x"`` and
    ``"a\\0y"`` would be the same key; ``|`` separates the parts of our keys.
    """
    if "%" in text or "|" in text or "\0" in text:
        text = text.replace("%", "%25").replace("|", "%7C").replace("\0", "%00")
    return text


def group_of(name: str) -> str:
    """The directory group of a name: its first path segment (a run), or "" if it has none."""
    return name.split("/", 1)[0] if "/" in name else ""


def shard_of(name: str) -> int:
    """The bucket of a name within its group: stable across processes and versions."""
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % DIRECTORY_SHARDS


def parse_header(key: str, value: Any) -> tuple[int, int, int, int]:
    """``(kind, first, count, epoch)`` of a segment entry."""
    if type(value) is not bytes or len(value) < HEADER.size:
        raise FormatError(f"Ignite entry {key!r} is not a perper segment: the namespace is corrupt")
    return HEADER.unpack_from(value)


def keyed_value(first: int, count: int, data: bytes, keys: bytes) -> bytes:
    """The entry of a keyed segment: header, packed keys (length first), segment data."""
    return HEADER.pack(KIND_KEYED, first, count, 0) + KEYS_LENGTH.pack(len(keys)) + keys + data


def payload(kind: int, value: bytes) -> bytes:
    """The segment data of an items or keyed entry."""
    if kind != KIND_KEYED:
        return value[HEADER.size :]
    (length,) = KEYS_LENGTH.unpack_from(value, HEADER.size)
    return value[HEADER.size + KEYS_LENGTH.size + length :]


def entry_keys(key: str, value: bytes) -> list[str | None]:
    """The idempotency keys of a keyed entry, one per item."""
    (length,) = KEYS_LENGTH.unpack_from(value, HEADER.size)
    start = HEADER.size + KEYS_LENGTH.size
    try:
        found = codec.unpack(value[start : start + length])
    except FormatError as error:
        raise FormatError(f"Ignite entry {key!r}, its idempotency keys: {error}") from None
    if type(found) is not list:
        raise FormatError(f"Ignite entry {key!r} has no list of keys: the namespace is corrupt")
    return found


def members(key: str, raw: Any) -> list[str]:
    """The names a directory entry lists."""
    found = codec.unpack(raw) if type(raw) is bytes else None
    if type(found) is not list:
        raise FormatError(
            f"Ignite entry {key!r} is not a perper directory: the namespace is corrupt"
        )
    return found


def meta_entry(full: str, raw: Any) -> Meta:
    """A metadata entry: version, then msgpack."""
    if type(raw) is not bytes or len(raw) < VERSION.size:
        raise FormatError(f"Ignite entry {full!r} is not perper metadata: the namespace is corrupt")
    try:
        value = codec.unpack(raw[VERSION.size :])
    except FormatError as error:
        raise FormatError(f"Ignite entry {full!r}: {error}") from None
    return Meta(VERSION.unpack_from(raw)[0], value)
