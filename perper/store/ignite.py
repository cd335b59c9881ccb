"""IgniteStore: streams and metadata in an Apache Ignite 2.x cluster, over pyignite's thin client.

URL: ``ignite://host:port[,host:port...][?namespace=NAME&username=..&password=..&tls=1&...]``
(every option is listed in :data:`URL_OPTIONS`; docs/ignite.md explains them).

Key layout
----------
Two caches, both created server-side by ``fabric/Node.java`` (created from here with the same
modes if a cluster lacks them):

* ``perper_segments`` (ATOMIC) holds the items. Segment ``n`` of a stream is one entry::

      "{namespace}|s|{stream}|{n}"  ->  byte array: kind (1 byte) | first_seq (int64) |
                                       count (uint32) | epoch (int64) | msgpack segment

  ``kind`` is 1 for items and 2 for the **seal marker**, an item-less entry that ends a
  sealed stream; ``epoch`` is the writer's lease epoch (fencing). Segment numbers are dense
  from 0, and segment ``n`` starts where ``n - 1`` ends. Beside them, one small entry per
  stream, ``"{namespace}|h|{stream}"``, holds a **hint** of its end: ``(segment count, head,
  epoch)`` as three int64.
* ``perper_meta`` (TRANSACTIONAL) holds the metadata tables at
  ``"{namespace}|m|{table}|{key}"`` (value: version as int64, then msgpack), the
  **directory** that ``streams()`` and ``meta_scan()`` list from (below), and the
  namespace's format record ``"{namespace}|format"``, checked on connect so a namespace of
  another layout is refused, never misread.

Stream names and metadata keys are escaped (``%`` ``|`` and NUL as ``%25`` ``%7C`` ``%00``):
pyignite cuts strings at NUL, so unescaped ``"a\\0x"`` and ``"a\\0y"`` would be one key.
Numbers live inside the byte values as big-endian int64s (Java longs); keys are strings, so
no Python int ever goes over the wire as an Ignite value. The namespace prefixes every key:
many logical stores share one cluster and its two caches.

Append protocol: the segment write is the commit
-------------------------------------------------
Appending at ``seq`` to a stream whose segments ``0..n-1`` end at ``seq`` is one request::

    put_if_absent("{ns}|s|{stream}|{n}", header(seq, count, epoch) + data)

``put_if_absent`` is atomic per key, and segments are never overwritten or deleted, so:

* The write is atomic with respect to the head: it succeeds only if segment ``n`` does not
  exist, i.e. nobody appended (or sealed: the marker sits at ``n``) since. Two writers racing
  for ``n`` get one winner; the loser gets :class:`HeadMovedError` and the contract's
  ``append`` compares its items with the winner's. Fencing rides on the same facts: the
  epoch of segment ``n - 1`` is the stream's epoch while ``n`` is absent, so a writer with a
  lower epoch is refused before it writes.
* There is no head record to move after the segment, hence no window in which a segment is
  written but not yet committed: a writer that dies after the request landed has committed
  its batch (like a SQLite COMMIT that landed before the process died; its recovery re-appends
  the same items as a no-op), one that dies before has written nothing. So **an orphan
  segment cannot exist**, and none can be seen by readers or block the next append. (With a
  separate head record, a slow writer could also overwrite a segment another writer had
  already committed under the same number; write-once keys rule that out too.)
* The facts a writer relies on ("segment ``n - 1`` ends at ``seq`` with epoch ``e``") never go
  stale, so a process caches them: an append whose cached end matches ``seq`` goes straight
  to the ``put_if_absent`` (one round trip per batch, see :meth:`IgniteStore.append`); a stale
  cache just loses the ``put_if_absent`` and falls back to the contract's checked path.
* After a socket error or timeout whether a request landed is unknown. It is retried
  (bounded, with backoff, on a fresh connection); if a retry finds the key taken, the stored
  entry is read back and compared byte for byte with ours: equal means our earlier attempt
  landed. Metadata compare-and-set (``replace_if_equals`` of the versioned bytes) and the
  seal marker's epoch (the one entry that changes, only upwards) are verified the same way,
  so retried writes are idempotent.

The stream's end (head, sealed, epoch) is found by probing: from the end this process already
knows (or the hint), ``get`` segment ``n``; while present, learn its header and probe further
(windows of 1, 4, 16, 64 keys via ``get_all``). A writer refreshes the hint every
:data:`HINT_EVERY` segments, as a task on the loop beside a segment's ``put_if_absent`` that
no append waits for (``close`` does); a cold probe walks at most a few windows, and a lost
hint costs only probes.
The stream's directory entry and its hint are written before segment 0.

Reads by seq never scan a stream: :meth:`IgniteStore._segments` finds the segment holding
``start`` from the segment starts this process has seen (an in-memory sorted index per stream,
filled by writes, reads and probes: sequential readers always hit it) or else by interpolation
search over segment numbers between known bounds (batches are usually of similar size, so one
round of two ``get_all`` probes typically lands on it; bisection guarantees ``log2`` rounds),
then fetches the following segments with ``get_all`` in chunks of up to 64 keys. Fetched
segments also land in a small LRU cache (``cache_mb``, default 16 MiB): they are immutable, so
it never needs invalidating, and a process that reads what it just wrote (the runtime) or
tails a stream it probed skips the second fetch.

``meta_scan`` and ``streams`` read a directory, not the cache: names (stream names, or the
keys of one metadata table: an "area") are grouped by their first path segment, the run
(``""`` for names without ``/``), and spread over :data:`DIRECTORY_SHARDS` buckets by CRC-32:
``"{namespace}|d|{area}|{group}|{shard}"`` holds a bucket's sorted names and
``"{namespace}|g|{area}"`` the area's sorted groups, all msgpack lists updated by
compare-and-set before the entry they list is created (a name whose writer died in between
has no entry: listings skip it). A prefix with a ``/`` names its group, so listing a run is
two requests (its buckets, then its entries) whatever else the cluster holds; the thin
client could only filter a scan with Java code on the server, and SQL would need
``ignite-indexing``.

Client: AioClient, not the sync Client
--------------------------------------
All requests go through pyignite's asyncio client: the event loop keeps running other stream
functions while a request is in flight, and several requests can be in flight at once on one
connection (the runtime's executions append concurrently; ``streams`` probes every stream at
once). bench/ignite.py measures both clients on the same node with the same bytes, interleaved
batch by batch. On the shared 2-core dev box the raw sync client ran appends (one ``put_all``
per 1000-item batch) at 0.8-1.2x the raw asyncio client's rate and raw reads (``get_all`` of
64 segments) at 1.0-1.5x, run to run; IgniteStore's own reads, which skip the task that
``AioCache.get_all`` spawns per value, came to 0.8-1.1x of the raw sync reads, and appending
to 4 streams at once (which only the asyncio client can overlap) was the fastest append
figure in 6 of 7 runs. The sync client would block the loop for every round trip (stalling
every other execution, timers and lease renewals) and is not thread-safe: no measured gain
pays for that. No threads are started here; pyignite's asyncio client only schedules tasks
on the running loop (reconnects), and the hint updates are tasks on it too.

Failures: every pyignite error is translated once, in :meth:`IgniteStore._request`: connection
errors and timeouts are retried for ``retry`` seconds (default 5) and then raise
:class:`~perper.errors.StoreUnavailableError` naming the addresses; a request never waits longer
than ``timeout`` seconds (default 10) for its answer; server-side errors raise
:class:`~perper.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import struct
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlsplit

from pyignite import AioClient
from pyignite.api import (
    cache_get_all_async,
)
from pyignite.datatypes.cache_config import CacheAtomicityMode, CacheMode, WriteSynchronizationMode
from pyignite.datatypes.cluster_state import ClusterState
from pyignite.datatypes.prop_codes import (
    PROP_CACHE_ATOMICITY_MODE,
    PROP_CACHE_MODE,
    PROP_NAME,
    PROP_WRITE_SYNCHRONIZATION_MODE,
)
from pyignite.exceptions import (
    AuthenticationError,
    CacheError,
    ClusterError,
    HandshakeError,
    ParseError,
    ReconnectError,
)

from perper import codec
from perper.errors import ConfigError, FormatError, StoreError, StoreUnavailableError
from perper.store.base import HeadMovedError, LogStore, Meta, StreamInfo, check_table

__all__ = [
    "DIRECTORY_SHARDS",
    "FORMAT",
    "HINT_EVERY",
    "META_CACHE",
    "SEGMENTS_CACHE",
    "URL_OPTIONS",
    "IgniteStore",
]

#: The cache of segments and hints (ATOMIC), and of metadata, directory and format (TRANSACTIONAL).
SEGMENTS_CACHE = "perper_segments"
META_CACHE = "perper_meta"
#: The key layout this module reads and writes, stored once per namespace.
FORMAT = b"perper-ignite/2"
#: A writer refreshes a stream's hint every this many segments.
HINT_EVERY = 16
#: A run's names in one directory area are spread over this many buckets (by CRC-32), so
#: adding a name rewrites a sixteenth of the run's list, and listing it is one get_all.
DIRECTORY_SHARDS = 16

#: Options an ``ignite://`` URL accepts after ``?``.
URL_OPTIONS = {
    "namespace": "prefix of every key; stores with different namespaces never see each other",
    "username": "user name for Ignite authentication",
    "password": "password for Ignite authentication",
    "tls": "1 to connect with TLS, 0 not to (default: pyignite's, TLS iff credentials given)",
    "tls_ca": "CA certificate file; the server certificate is then required and verified",
    "tls_cert": "client certificate file",
    "tls_key": "client private key file",
    "tls_key_password": "password of the client key file",
    "tls_ciphers": "OpenSSL cipher list",
    "timeout": "seconds to wait for one request's answer (default 10)",
    "retry": "seconds to keep retrying an unreachable cluster before giving up (default 5)",
    "partition_aware": "1 to send each key to its primary node (default with several "
    "addresses), 0 to use one connection (default with one address)",
    "cache_mb": "MiB of recently read or written segments kept in memory (default 16)",
}

# pyignite logs every failed connection attempt with a traceback and installs no handler,
# so without one Python's last-resort handler prints them on stderr. Those failures reach
# callers as StoreUnavailableError; the records still go to handlers an app configures.
logging.getLogger("pyignite").addHandler(logging.NullHandler())

_DEFAULT_PORT = 10800
_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

_HEADER = struct.Struct(">BqIq")  # kind, first seq, count, lease epoch of the writer
_KIND_ITEMS = 1
_KIND_SEAL = 2
_HINT = struct.Struct(">qqq")  # segment count, head, epoch of the last segment
_VERSION = struct.Struct(">q")

_MAX_WINDOW = 64
_STREAMS_AREA = "streams"  # the directory area of stream names (tables are the others)
_PROBE_CONCURRENCY = 32

# What a request can fail with when the connection, not the request, is at fault.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ReconnectError,
    ParseError,
    asyncio.TimeoutError,
)

T = TypeVar("T")


@dataclass(slots=True)
class _Stream:
    """What this process knows of one stream. Every fact but ``seal_epoch`` is permanent
    (segments are write-once), so none of it can be wrong, only behind.

    ``n``/``head``/``epoch``: segments ``0..n-1`` exist, hold seqs ``0..head-1`` and the last
    was written with lease ``epoch`` (a lower bound of the end). ``sealed``/``seal_epoch``:
    the seal marker seen at ``n`` by the last probe. ``starts``/``numbers``: sorted seqs at
    which a known segment starts, and its number.
    """

    n: int = 0
    head: int = 0
    epoch: int = 0
    sealed: bool = False
    seal_epoch: int = 0
    registered: bool = False
    starts: list[int] = field(default_factory=lambda: [0])
    numbers: list[int] = field(default_factory=lambda: [0])

    def learn(self, n: int, first: int, count: int, epoch: int) -> None:
        self._bound(first, n)
        self._bound(first + count, n + 1)
        if n + 1 > self.n:
            self.n, self.head, self.epoch = n + 1, first + count, epoch
        self.registered = True

    def learn_end(self, n: int, head: int, epoch: int) -> None:
        if n > self.n:
            self.n, self.head, self.epoch = n, head, epoch
        self._bound(head, n)
        self.registered = True

    def _bound(self, seq: int, n: int) -> None:
        i = bisect.bisect_left(self.starts, seq)
        if i < len(self.starts) and self.starts[i] == seq:
            return
        self.starts.insert(i, seq)
        self.numbers.insert(i, n)
        if len(self.starts) > 8192:  # keep it small: every other bound, plus the end
            self.starts, self.numbers = self.starts[::2], self.numbers[::2]
            self._bound(self.head, self.n)

    def around(self, seq: int) -> tuple[int, int, int, int]:
        """Known segment starts around ``seq``: ``(lo_seq, lo_n, hi_seq, hi_n)`` with
        ``lo_seq <= seq < hi_seq``; requires ``seq < self.head``."""
        i = bisect.bisect_right(self.starts, seq) - 1
        return self.starts[i], self.numbers[i], self.starts[i + 1], self.numbers[i + 1]

    def estimate_number(self, seq: int) -> int | None:
        """Estimate the number of the first segment starting at or after ``seq`` (exact when
        a segment is known to start there; None past the known end)."""
        i = bisect.bisect_left(self.starts, seq)
        if i == len(self.starts):
            return None
        if self.starts[i] == seq:
            return self.numbers[i]
        lo_seq, lo_n, hi_seq, hi_n = (
            self.starts[i - 1],
            self.numbers[i - 1],
            self.starts[i],
            self.numbers[i],
        )
        return lo_n + -(-(seq - lo_seq) * (hi_n - lo_n) // (hi_seq - lo_seq))


class _SegmentCache:
    """LRU of stored segment entries by key, bounded in bytes. Entries are immutable."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.entries: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        if self.limit <= 0 or len(value) > self.limit // 4 or key in self.entries:
            return
        self.entries[key] = value
        self.size += len(value)
        while self.size > self.limit:
            _, old = self.entries.popitem(last=False)
            self.size -= len(old)


@dataclass(slots=True)
class _Connection:
    client: AioClient
    segments: Any
    meta: Any
    loop: asyncio.AbstractEventLoop
    # The request timeout, kept by one watchdog timer per connection rather than an
    # asyncio.timeout per request (measured: most of the Python time an append spent
    # outside encoding): the task awaiting each request in flight, with its deadline.
    inflight: dict[asyncio.Task[Any], float] = field(default_factory=dict)
    expired: set[asyncio.Task[Any]] = field(default_factory=set)
    watchdog: asyncio.TimerHandle | None = None

    async def request(self, call: Callable[[_Connection], Awaitable[T]], timeout: float) -> T:
        """``await call(self)``, raising TimeoutError if it takes ``timeout`` seconds."""
        task = asyncio.current_task()
        if task is None or task in self.inflight:  # not a task, or re-entered: plain timeout
            async with asyncio.timeout(timeout):
                return await call(self)
        self.inflight[task] = self.loop.time() + timeout
        if self.watchdog is None:
            self.watchdog = self.loop.call_later(timeout, self._expire)
        try:
            return await call(self)
        except asyncio.CancelledError:
            if task in self.expired:
                self.expired.discard(task)
                if task.uncancel() == 0:  # cancelled by the watchdog only: a timeout
                    raise TimeoutError() from None
            raise
        finally:
            self.inflight.pop(task, None)
            self.expired.discard(task)  # a cancel the call swallowed is forgotten too

    def _expire(self) -> None:
        """Cancel the tasks whose request is past its deadline; re-arm for the next one."""
        self.watchdog = None
        now = self.loop.time()
        for task, deadline in list(self.inflight.items()):
            if deadline <= now:
                del self.inflight[task]
                self.expired.add(task)
                task.cancel()
        if self.inflight:
            self.watchdog = self.loop.call_at(min(self.inflight.values()), self._expire)


def _parse_header(key: str, value: bytes) -> tuple[int, int, int, int]:
    if type(value) is not bytes or len(value) < _HEADER.size:
        raise FormatError(f"Ignite entry {key!r} is not a perper segment: the namespace is corrupt")
    return _HEADER.unpack_from(value)


class IgniteStore(LogStore):
    """A :class:`LogStore` in an Apache Ignite 2.x cluster (see the module docstring).

    Connects lazily, on the first call, within the running event loop.

    Args:
        addresses: ``(host, port)`` of thin-client endpoints; any one of them is enough.
        namespace: prefix of every key (letters, digits, ``.``, ``_``, ``-``).
        username, password: Ignite authentication.
        tls: pyignite SSL arguments (``use_ssl``, ``ssl_ca_certfile``, ...).
        timeout: seconds to wait for one request's answer.
        retry: seconds to keep retrying when the cluster cannot be reached.
        partition_aware: route each key to its primary node (default: iff several addresses).
        cache_mb: MiB of segments kept in memory.
        url: the URL it was opened with (for messages; a password in it is masked).
    """

    _poll_interval_min = 0.002
    _poll_interval_max = 0.1

    def __init__(
        self,
        addresses: Sequence[tuple[str, int]],
        *,
        namespace: str = "default",
        username: str | None = None,
        password: str | None = None,
        tls: dict[str, Any] | None = None,
        timeout: float = 10.0,
        retry: float = 5.0,
        partition_aware: bool | None = None,
        cache_mb: float = 16,
        url: str | None = None,
    ) -> None:
        super().__init__()
        if not addresses:
            raise ConfigError("IgniteStore needs at least one host:port address")
        if not namespace or not set(namespace) <= _NAMESPACE_CHARS or len(namespace) > 200:
            raise ConfigError(
                f"Ignite namespace {namespace!r} is not valid: use letters, digits, '.', '_' "
                "and '-' only (at most 200)"
            )
        self.addresses = [(str(host), int(port)) for host, port in addresses]
        self.namespace = namespace
        where = ",".join(f"{host}:{port}" for host, port in self.addresses)
        self.where = where
        self.url = url or f"ignite://{where}?namespace={quote(namespace)}"
        self._client_args: dict[str, Any] = dict(tls or {})
        if username is not None:
            self._client_args["username"] = username
        if password is not None:
            self._client_args["password"] = password
        self._timeout = timeout
        self._retry = retry
        # With one address there is one connection: hashing keys to pick it only costs time.
        self._partition_aware = len(addresses) > 1 if partition_aware is None else partition_aware
        self._cache = _SegmentCache(int(cache_mb * 1024 * 1024))
        self._streams: dict[str, _Stream] = {}
        self._meta_seen: dict[str, bytes] = {}
        self._conn: _Connection | None = None
        self._connect_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closed = False
        self._hints: set[asyncio.Task[None]] = set()
        self._segment_prefix = f"{namespace}|s|"
        self._hint_prefix = f"{namespace}|h|"
        self._meta_prefix = f"{namespace}|m|"
        self._directory_prefix = f"{namespace}|d|"
        self._groups_prefix = f"{namespace}|g|"
        # What this process has seen in the directory, (area, name) and (area, group):
        # each is indexed once.
        self._indexed: set[tuple[str, str]] = set()
        self._indexed_groups: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ opening

    @classmethod
    def from_url(cls, url: str) -> IgniteStore:
        """Open ``ignite://host:port[,host:port...][?option=value&...]`` (see :data:`URL_OPTIONS`).

        Raises:
            ConfigError: the URL is malformed or names an unknown option.
        """
        parts = urlsplit(url)
        if parts.scheme != "ignite":
            raise ConfigError(f"store URL {_mask(url)!r} is not an ignite:// URL")
        netloc = parts.netloc
        options: dict[str, str] = {}
        if "@" in netloc:
            credentials, netloc = netloc.rsplit("@", 1)
            user, _, secret = credentials.partition(":")
            options["username"] = user
            if secret:
                options["password"] = secret
        if not netloc:
            raise ConfigError(
                f"store URL {_mask(url)!r} names no node: write ignite://127.0.0.1:10800"
            )
        addresses = []
        for part in netloc.split(","):
            host, port = _parse_address(url, part)
            addresses.append((host, port))
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in URL_OPTIONS:
                raise ConfigError(
                    f"store URL {_mask(url)!r} has an unknown option {name!r}; the options are "
                    + ", ".join(URL_OPTIONS)
                )
            options[name] = value
        tls: dict[str, Any] = {}
        if "tls" in options:
            tls["use_ssl"] = _parse_flag(url, "tls", options["tls"])
        for option, argument in (
            ("tls_ca", "ssl_ca_certfile"),
            ("tls_cert", "ssl_certfile"),
            ("tls_key", "ssl_keyfile"),
            ("tls_key_password", "ssl_keyfile_password"),
            ("tls_ciphers", "ssl_ciphers"),
        ):
            if options.get(option):
                tls[argument] = options[option]
                tls.setdefault("use_ssl", True)
        if "ssl_ca_certfile" in tls:
            import ssl

            tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return cls(
            addresses,
            namespace=options.get("namespace") or "default",
            username=options.get("username") or None,
            password=options.get("password") or None,
            tls=tls,
            timeout=_parse_seconds(url, "timeout", options.get("timeout"), 10.0),
            retry=_parse_seconds(url, "retry", options.get("retry"), 5.0),
            partition_aware=(
                _parse_flag(url, "partition_aware", options["partition_aware"])
                if "partition_aware" in options
                else None
            ),
            cache_mb=_parse_seconds(url, "cache_mb", options.get("cache_mb"), 16.0),
            url=_mask(url),
        )

    async def _connection(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is not None and conn.loop is loop:
            return conn
        if self._closed:
            raise StoreError(f"{self.url}: the store is closed; open a new one")
        if self._connect_lock is None or self._connect_lock[0] is not loop:
            self._connect_lock = (loop, asyncio.Lock())
        async with self._connect_lock[1]:
            conn = self._conn
            if conn is not None and conn.loop is loop:
                return conn
            if conn is not None:  # opened under another event loop: unusable here
                self._conn = None
                _abandon(conn)
            self._conn = await self._connect(loop, deadline)
            return self._conn

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        delay = 0.05
        while True:
            remaining = max(deadline - loop.time(), 0.05)
            client = AioClient(
                partition_aware=self._partition_aware,
                handshake_timeout=min(remaining, self._timeout),
                **self._client_args,
            )
            try:
                async with asyncio.timeout(min(remaining, self._timeout)):
                    await client.connect(self.addresses)
                    conn = await self._prepare(client, loop)
                return conn
            except AuthenticationError as error:
                await _close_quietly(client)
                raise StoreUnavailableError(
                    f"{self.url}: Ignite at {self.where} refused the credentials "
                    f"({error.message}); check username and password"
                ) from error
            except (*_CONNECTION_ERRORS, HandshakeError, CacheError, ClusterError) as error:
                await _close_quietly(client)
                if loop.time() + delay >= deadline:
                    raise StoreUnavailableError(
                        f"{self.url}: cannot reach an Ignite cluster at {self.where} "
                        f"(gave up after {self._retry:g}s: {_describe(error)}); start one with "
                        "'perper fabric start' or fix the host:port in the URL"
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except BaseException:
                await _close_quietly(client)
                raise

    async def _prepare(self, client: AioClient, loop: asyncio.AbstractEventLoop) -> _Connection:
        state = await client.get_cluster().get_state()
        if state != ClusterState.ACTIVE:
            raise ClusterError(
                f"the cluster is {ClusterState(state).name}, not ACTIVE (a new persistent "
                "cluster must be activated once; 'perper fabric start' does)"
            )
        names = set(await client.get_cache_names())
        caches = []
        for name, mode in (
            (SEGMENTS_CACHE, CacheAtomicityMode.ATOMIC),
            (META_CACHE, CacheAtomicityMode.TRANSACTIONAL),
        ):
            if name in names:
                caches.append(await client.get_cache(name))
            else:  # a cluster not started by perper's fabric: create what Node.java would
                caches.append(
                    await client.get_or_create_cache(
                        {
                            PROP_NAME: name,
                            PROP_CACHE_MODE: CacheMode.PARTITIONED,
                            PROP_CACHE_ATOMICITY_MODE: mode,
                            PROP_WRITE_SYNCHRONIZATION_MODE: WriteSynchronizationMode.FULL_SYNC,
                        }
                    )
                )
        segments, meta = caches
        key = f"{self.namespace}|format"
        stored = await meta.get(key)
        if stored is None:
            await meta.put_if_absent(key, FORMAT)
            stored = await meta.get(key)
        if stored != FORMAT:
            shown = stored.decode(errors="replace") if isinstance(stored, bytes) else repr(stored)
            raise FormatError(
                f"{self.url}: namespace {self.namespace!r} on {self.where} holds layout "
                f"{shown!r}, this perper reads {FORMAT.decode()!r}; open it with the perper "
                "that wrote it, or use another namespace"
            )
        return _Connection(client, segments, meta, loop)

    # ----------------------------------------------------------------- requests

    async def _request(
        self, what: str, call: Callable[[_Connection], Awaitable[T]]
    ) -> tuple[T, bool]:
        """Run one request, retrying connection failures for ``retry`` seconds.

        Returns the result and whether an earlier attempt failed with an unknown outcome
        (it may have been applied: conditional writes then verify what is stored).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry
        delay = 0.02
        uncertain = False
        while True:
            conn = await self._connection(deadline)
            try:
                return await conn.request(call, self._timeout), uncertain
            except _CONNECTION_ERRORS as error:
                uncertain = True
                # The connection may be wedged (timeout) or half dead: start over.
                if self._conn is conn:
                    self._conn = None
                    await _close_quietly(conn.client)
                if loop.time() + delay >= deadline:
                    raise StoreUnavailableError(
                        f"{self.url}: Ignite at {self.where} did not answer {what} (gave up "
                        f"after {self._retry:g}s: {_describe(error)}); check that the cluster "
                        "is up ('perper fabric status')"
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except (CacheError, ClusterError) as error:
                message = str(error)
                kind = StoreUnavailableError if "inactive" in message.lower() else StoreError
                raise kind(
                    f"{self.url}: Ignite at {self.where} refused {what}: {message}"
                ) from error

    async def _get(self, cache: str, key: str, what: str) -> Any:
        value, _ = await self._request(what, lambda c: _cache(c, cache).get(key))
        return value

    async def _get_all(self, cache: str, keys: list[str], what: str) -> dict[str, Any]:
        if len(keys) == 1:
            value = await self._get(cache, keys[0], what)
            return {} if value is None else {keys[0]: value}

        async def get_all(conn: _Connection) -> dict[str, Any]:
            # AioCache.get_all spawns a task per value to unwrap binary objects; our values
            # are byte arrays, so call the request underneath it.
            node = await conn.client.random_node()
            result = await cache_get_all_async(node, _cache(conn, cache).cache_info, keys)
            if result.status != 0:
                raise CacheError(result.message)
            return result.value or {}

        found, _ = await self._request(what, get_all)
        return found

    async def _put_if_absent(self, cache: str, key: str, value: bytes, what: str) -> bool:
        """True if ``value`` is now stored at ``key`` because of us (or an equal write)."""
        return await self._conditional(
            cache, key, value, what, lambda c: _cache(c, cache).put_if_absent(key, value)
        )

    async def _replace(self, cache: str, key: str, old: bytes, new: bytes, what: str) -> bool:
        """Compare-and-set: True if ``key`` held ``old`` and now holds ``new`` because of us."""
        return await self._conditional(
            cache, key, new, what, lambda c: _cache(c, cache).replace_if_equals(key, old, new)
        )

    async def _conditional(
        self,
        cache: str,
        key: str,
        written: bytes,
        what: str,
        call: Callable[[_Connection], Awaitable[bool]],
    ) -> bool:
        """Run a conditional write; if an earlier attempt's outcome is unknown (it may have
        landed), whether ``key`` now holds ``written`` decides."""
        done, uncertain = await self._request(what, call)
        if done:
            return True
        if uncertain:
            return bool(await self._get(cache, key, what) == written)
        return False

    # --------------------------------------------------------------- keys, state

    def _segment_key(self, stream: str, n: int) -> str:
        return f"{self._segment_prefix}{_escape(stream)}|{n}"

    def _meta_key(self, table: str, key: str) -> str:
        return f"{self._meta_prefix}{table}|{_escape(key)}"

    def _directory_key(self, area: str, group: str, shard: int) -> str:
        return f"{self._directory_prefix}{area}|{_escape(group)}|{shard}"

    def _groups_key(self, area: str) -> str:
        return self._groups_prefix + area

    def _hint_key(self, stream: str) -> str:
        return self._hint_prefix + _escape(stream)

    def _stream(self, stream: str) -> _Stream:
        state = self._streams.get(stream)
        if state is None:
            state = self._streams[stream] = _Stream()
        return state

    async def _register(self, stream: str, state: _Stream) -> None:
        """List the stream in the directory (for ``streams``) and create its hint, before its
        first segment; both writes are idempotent."""
        if not state.registered:
            what = f"registering {stream!r}"
            await asyncio.gather(
                self._index(_STREAMS_AREA, stream),
                self._put_if_absent(
                    SEGMENTS_CACHE, self._hint_key(stream), _HINT.pack(0, 0, 0), what
                ),
            )
            state.registered = True

    # ------------------------------------------------------------------ directory

    async def _index(self, area: str, name: str) -> None:
        """Add ``name`` to the directory of ``area`` (a metadata table, or the streams):
        to its group's bucket, and its group to the area's list of groups. Idempotent, and
        done before the entry itself is written: a listed name may lack an entry (its
        writer died in between; listings skip it), but no entry is ever left unlisted."""
        if (area, name) in self._indexed:
            return
        group = _group(name)
        what = f"indexing {name!r}"
        if (area, group) not in self._indexed_groups:
            await self._add_member(self._groups_key(area), group, what)
            _remember(self._indexed_groups, (area, group))
        await self._add_member(self._directory_key(area, group, _shard(name)), name, what)
        _remember(self._indexed, (area, name))

    async def _add_member(self, key: str, member: str, what: str) -> None:
        """Insert ``member`` into the sorted msgpack list at ``key`` (compare-and-set)."""
        while True:
            raw = await self._get(META_CACHE, key, what)
            if raw is None:
                if await self._put_if_absent(META_CACHE, key, codec.pack([member]), what):
                    return
                continue
            members = _members(key, raw)
            at = bisect.bisect_left(members, member)
            if at < len(members) and members[at] == member:
                return
            members.insert(at, member)
            if await self._replace(META_CACHE, key, raw, codec.pack(members), what):
                return

    async def _listed(self, area: str, prefix: str, what: str) -> list[str]:
        """The names in the directory of ``area`` that start with ``prefix``, sorted."""
        if "/" in prefix:
            groups = [_group(prefix)]
        else:
            # A name without "/" is in group ""; a name with one starts with a prefix
            # without one only if its group does.
            raw = await self._get(META_CACHE, self._groups_key(area), what)
            known = _members(self._groups_key(area), raw) if raw is not None else []
            groups = [group for group in known if group == "" or group.startswith(prefix)]
        if not groups:
            return []
        keys = [
            self._directory_key(area, group, shard)
            for group in groups
            for shard in range(DIRECTORY_SHARDS)
        ]
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 1024):
            found.update(await self._get_all(META_CACHE, keys[i : i + 1024], what))
        names = [
            name
            for key in keys
            if key in found
            for name in _members(key, found[key])
            if name.startswith(prefix)
        ]
        for i, group in enumerate(groups):
            shards = keys[i * DIRECTORY_SHARDS : (i + 1) * DIRECTORY_SHARDS]
            if any(key in found for key in shards):  # written after its group is listed
                _remember(self._indexed_groups, (area, group))
        for name in names:
            _remember(self._indexed, (area, name))
        names.sort()
        return names

    async def _probe(self, stream: str, state: _Stream) -> None:
        """Advance ``state`` to the stream's current end, seal marker included."""
        window = 1
        while True:
            base = state.n  # other tasks may advance state.n while we wait for the answer
            keys = [self._segment_key(stream, base + i) for i in range(window)]
            found = await self._get_all(SEGMENTS_CACHE, keys, f"reading the end of {stream!r}")
            for i, key in enumerate(keys):
                value = found.get(key)
                if value is None:
                    return
                if self._learn(stream, state, base + i, key, value)[0] == _KIND_SEAL:
                    return
            window = min(window * 4, _MAX_WINDOW)

    def _learn(
        self, stream: str, state: _Stream, n: int, key: str, value: bytes
    ) -> tuple[int, int, int, int]:
        """Take in segment ``n`` as read from the store; return its header."""
        kind, first, count, epoch = header = _parse_header(key, value)
        if n == state.n and first != state.head:
            raise StoreError(
                f"{self.url}: segment {n} of stream {stream!r} starts at seq {first} but the "
                f"segments before it end at {state.head}: the namespace is corrupt"
            )
        if kind == _KIND_SEAL:
            if n == state.n:
                state.sealed = state.registered = True
                state.seal_epoch = epoch
        else:
            state.learn(n, first, count, epoch)
            self._cache.put(key, value)
        return header

    # --------------------------------------------------------------- primitives

    async def info(self, stream: str) -> StreamInfo:
        state = self._stream(stream)
        if not state.registered:
            hint = await self._get(SEGMENTS_CACHE, self._hint_key(stream), f"looking up {stream!r}")
            if hint is None:
                return StreamInfo(stream, 0, False)
            state.learn_end(*_HINT.unpack(hint))
        await self._probe(stream, state)
        if state.sealed:
            return StreamInfo(stream, state.head, True, state.seal_epoch)
        return StreamInfo(stream, state.head, False, state.epoch)

    async def _segments(
        self, stream: str, start: int, stop: int | None
    ) -> AsyncIterator[tuple[int, int, bytes]]:
        if stop is not None and stop <= start:
            return
        state = self._stream(stream)
        n = await self._locate(stream, state, start)
        if n is None:
            return
        beyond = 2  # window once past the known end, doubled on each round
        while True:
            window = _MAX_WINDOW
            if n < state.n:
                window = min(window, state.n - n)
            else:
                window, beyond = beyond, min(beyond * 2, _MAX_WINDOW)
            if stop is not None:
                past = state.estimate_number(stop)
                if past is not None:
                    window = min(window, max(past - n, 1))
            keys = [self._segment_key(stream, n + i) for i in range(window)]
            values: dict[str, bytes] = {}
            missing = []
            for key in keys:
                cached = self._cache.get(key)
                if cached is None:
                    missing.append(key)
                else:
                    values[key] = cached
            if missing:
                values.update(await self._get_all(SEGMENTS_CACHE, missing, f"reading {stream!r}"))
            for key in keys:
                value = values.get(key)
                if value is None:
                    return
                kind, first, count, _ = self._learn(stream, state, n, key, value)
                if kind == _KIND_SEAL or (stop is not None and first >= stop):
                    return
                if first + count > start:
                    yield first, count, value[_HEADER.size :]
                n += 1

    async def _locate(self, stream: str, state: _Stream, start: int) -> int | None:
        """The number of the segment holding ``start``, or None if the stream ends before it.

        (With ``start == 0`` segment 0, which may not exist: the caller then finds nothing.)
        """
        if start == 0:
            return 0
        if start >= state.head:
            await self.info(stream)
            if start >= state.head:
                return None
        while True:
            lo_seq, lo_n, hi_seq, hi_n = state.around(start)
            if lo_seq == start or hi_n - lo_n == 1:
                return lo_n
            # Interpolate (batches are usually of similar size) and bisect (log2 worst case).
            guess = lo_n + (start - lo_seq) * (hi_n - lo_n) // (hi_seq - lo_seq)
            probes = sorted({min(max(guess, lo_n + 1), hi_n - 1), (lo_n + hi_n) // 2})
            keys = [self._segment_key(stream, n) for n in probes]
            found = await self._get_all(SEGMENTS_CACHE, keys, f"seeking seq {start} in {stream!r}")
            for n, key in zip(probes, keys, strict=True):
                value = found.get(key)
                if value is None:
                    raise StoreError(
                        f"{self.url}: segment {n} of stream {stream!r} is missing although "
                        f"segment {hi_n} exists: the namespace is corrupt"
                    )
                kind, first, count, epoch = _parse_header(key, value)
                if kind == _KIND_ITEMS:
                    state.learn(n, first, count, epoch)
                    self._cache.put(key, value)

    async def _write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        state = self._stream(stream)
        if state.head != seq or state.sealed:
            await self.info(stream)
        if state.sealed or state.head != seq or state.epoch > epoch:
            raise HeadMovedError(stream)
        if not await self._put_segment(stream, state, seq, count, data, epoch):
            raise HeadMovedError(stream)

    async def _put_segment(
        self, stream: str, state: _Stream, seq: int, count: int, data: bytes, epoch: int
    ) -> bool:
        """Store segment ``state.n``; False if it exists (someone appended or sealed first).

        The caller has checked that the segments before end at ``seq`` with an epoch not
        above ``epoch``; both are permanent facts, so ``put_if_absent`` makes it atomic.
        """
        n = state.n
        if n == 0:
            await self._register(stream, state)
        key = self._segment_key(stream, n)
        value = _HEADER.pack(_KIND_ITEMS, seq, count, epoch) + data
        if n % HINT_EVERY == 0 and n:
            # Segments 0..n-1 are committed, so a hint of that end is true whether or not
            # this put wins. It is only a shortcut for probes: sent beside the append, not
            # waited for, and a lost one costs a later probe a few more keys.
            self._send_hint(stream, _HINT.pack(n, seq, state.epoch))
        done = await self._put_if_absent(SEGMENTS_CACHE, key, value, f"appending to {stream!r}")
        if not done:
            return False
        state.learn(n, seq, count, epoch)
        self._cache.put(key, value)
        return True

    def _send_hint(self, stream: str, hint: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._put_hint_quietly(stream, hint))
        self._hints.add(task)
        task.add_done_callback(self._hints.discard)

    async def _put_hint_quietly(self, stream: str, hint: bytes) -> None:
        with contextlib.suppress(StoreError):
            await self._put_hint(stream, hint)

    async def _put_hint(self, stream: str, hint: bytes) -> None:
        key = self._hint_key(stream)
        await self._request(f"updating the end of {stream!r}", lambda c: c.segments.put(key, hint))

    async def append(self, stream: str, seq: int, items: Sequence[Any], *, epoch: int = 0) -> int:
        """See :meth:`LogStore.append`.

        Fast path: when this process knows the stream ends exactly at ``seq`` (it wrote or read
        up to there), the batch goes straight to ``put_if_absent`` of the next segment, skipping
        the contract's ``info`` round trip. That is safe because the known end can only be
        behind, never wrong: if anything was appended or sealed since, the ``put_if_absent``
        finds the key taken and the contract's checked path runs instead.
        """
        state = self._streams.get(stream)
        if (
            state is not None
            and items
            and state.n
            and state.head == seq
            and not state.sealed
            and state.epoch <= epoch
        ):
            batch = items if type(items) is list else list(items)
            data = codec.pack_segment(batch)
            if await self._put_segment(stream, state, seq, len(batch), data, epoch):
                self._notify(stream)
                return seq + len(batch)
            items = batch
        return await super().append(stream, seq, items, epoch=epoch)

    async def _seal(self, stream: str, epoch: int) -> bool:
        state = self._stream(stream)
        await self._register(stream, state)
        while True:
            await self.info(stream)
            key = self._segment_key(stream, state.n)
            if state.sealed:
                # The marker is the one entry that changes: only its epoch, only upwards.
                if state.seal_epoch >= epoch:
                    return state.seal_epoch == epoch
                old = _HEADER.pack(_KIND_SEAL, state.head, 0, state.seal_epoch)
                new = _HEADER.pack(_KIND_SEAL, state.head, 0, epoch)
                if await self._replace(SEGMENTS_CACHE, key, old, new, f"sealing {stream!r}"):
                    state.seal_epoch = epoch
                    return True
                continue
            if state.epoch > epoch:
                return False
            marker = _HEADER.pack(_KIND_SEAL, state.head, 0, epoch)
            if await self._put_if_absent(SEGMENTS_CACHE, key, marker, f"sealing {stream!r}"):
                state.sealed, state.seal_epoch = True, epoch
                await self._put_hint(stream, _HINT.pack(state.n, state.head, state.epoch))
                return True

    async def streams(self, *, prefix: str = "") -> list[StreamInfo]:
        names = await self._listed(_STREAMS_AREA, prefix, "listing streams")
        for i in range(0, len(names), 256):
            chunk = [name for name in names[i : i + 256] if not self._stream(name).registered]
            keys = [self._hint_key(name) for name in chunk]
            hints = await self._get_all(SEGMENTS_CACHE, keys, "listing streams") if keys else {}
            for name, key in zip(chunk, keys, strict=True):
                hint = hints.get(key)
                if type(hint) is bytes and len(hint) == _HINT.size:
                    self._streams[name].learn_end(*_HINT.unpack(hint))
        limit = asyncio.Semaphore(_PROBE_CONCURRENCY)

        async def probe(name: str) -> None:
            async with limit:
                await self._probe(name, self._streams[name])

        await asyncio.gather(*(probe(name) for name in names))
        infos = []
        for name in names:
            state = self._streams[name]
            epoch = state.seal_epoch if state.sealed else state.epoch
            infos.append(StreamInfo(name, state.head, state.sealed, epoch))
        return infos

    async def meta_get(self, table: str, key: str) -> Meta | None:
        check_table(table)
        full = self._meta_key(table, key)
        raw = await self._get(META_CACHE, full, f"reading {table} {key!r}")
        if raw is None:
            return None
        self._remember(full, raw)
        return _meta(full, raw)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        check_table(table)
        if version < 0:
            return None
        full = self._meta_key(table, key)
        new = _VERSION.pack(version + 1) + codec.pack(value, what="metadata")
        what = f"writing {table} {key!r}"
        if version == 0:
            await self._index(table, key)
            if await self._put_if_absent(META_CACHE, full, new, what):
                self._remember(full, new)
                return 1
            return None
        old = self._meta_seen.get(full)
        for _ in range(2):  # once with what this process saw last, once with a fresh read
            if old is None or _VERSION.unpack_from(old)[0] != version:
                old = await self._get(META_CACHE, full, what)
                if old is None or _VERSION.unpack_from(old)[0] != version:
                    return None
            if await self._replace(META_CACHE, full, old, new, what):
                self._remember(full, new)
                return version + 1
            old = None
        return None

    async def meta_scan(self, table: str, *, prefix: str = "") -> list[tuple[str, Meta]]:
        check_table(table)
        what = f"scanning {table}"
        names = await self._listed(table, prefix, what)
        result = []
        for i in range(0, len(names), 256):
            chunk = names[i : i + 256]
            keys = [self._meta_key(table, name) for name in chunk]
            found = await self._get_all(META_CACHE, keys, what)
            for name, full in zip(chunk, keys, strict=True):
                raw = found.get(full)
                if raw is not None:  # listed, but its writer died before writing it
                    self._remember(full, raw)
                    result.append((name, _meta(full, raw)))
        return result

    async def close(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # Let hints in flight land (they save the next reader probes).
        hints = {task for task in self._hints if task.get_loop() is running and not task.done()}
        if hints:
            await asyncio.wait(hints, timeout=self._timeout)
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.loop is running:
            await _close_quietly(conn.client)
        else:
            _abandon(conn)

    # ------------------------------------------------------------------ helpers

    def _remember(self, full: str, raw: bytes) -> None:
        if len(self._meta_seen) >= 4096:
            self._meta_seen.clear()
        self._meta_seen[full] = raw


# ---------------------------------------------------------------------- helpers


def _escape(text: str) -> str:
    """Make a stream name or metadata key safe inside an Ignite key.

    pyignite truncates strings at NUL (ctypes ``c_char`` arrays), so ``"a\\0x"`` and
    ``"a\\0y"`` would be the same key; ``|`` separates the parts of our keys.
    """
    if "%" in text or "|" in text or "\0" in text:
        text = text.replace("%", "%25").replace("|", "%7C").replace("\0", "%00")
    return text


def _group(name: str) -> str:
    """The directory group of a name: its first path segment (a run), or "" if it has none."""
    return name.split("/", 1)[0] if "/" in name else ""


def _shard(name: str) -> int:
    """The bucket of a name within its group: stable across processes and versions."""
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % DIRECTORY_SHARDS


def _remember(seen: set[tuple[str, str]], pair: tuple[str, str]) -> None:
    if len(seen) >= 65536:  # bounded: forgetting costs one idempotent re-index
        seen.clear()
    seen.add(pair)


def _members(key: str, raw: Any) -> list[str]:
    members = codec.unpack(raw) if type(raw) is bytes else None
    if type(members) is not list:
        raise FormatError(
            f"Ignite entry {key!r} is not a perper directory: the namespace is corrupt"
        )
    return members


def _cache(conn: _Connection, name: str) -> Any:

    return conn.segments if name == SEGMENTS_CACHE else conn.meta


def _meta(full: str, raw: Any) -> Meta:
    if type(raw) is not bytes or len(raw) < _VERSION.size:
        raise FormatError(f"Ignite entry {full!r} is not perper metadata: the namespace is corrupt")
    return Meta(_VERSION.unpack_from(raw)[0], codec.unpack(raw[_VERSION.size :]))


async def _close_quietly(client: AioClient) -> None:
    with contextlib.suppress(Exception):
        await client.close()


def _abandon(conn: _Connection) -> None:
    """Drop a connection opened under another event loop, which cannot run its close."""
    for node in list(getattr(conn.client, "_nodes", [])):
        node._closed = True  # no reconnect attempts on that loop
        transport = getattr(node, "_transport", None)
        node._transport = None
        if transport is None:
            continue
        if conn.loop.is_closed():
            # transport.abort() would schedule the close on the dead loop: close the socket.
            sock = getattr(transport, "_sock", None)
            if sock is not None:
                sock.close()
                transport._sock = None
        else:
            with contextlib.suppress(Exception):
                transport.abort()


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error) or type(error).__name__
    return text


def _mask(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, hosts = netloc.rsplit("@", 1)
        user, sep, _ = credentials.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hosts}"
    query = "&".join(
        f"{name}={'***' if name in ('password', 'tls_key_password') else quote(value)}"
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return f"{parts.scheme}://{netloc}{parts.path}{'?' + query if query else ''}"


def _parse_address(url: str, part: str) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [IPv6]:port
        host, _, rest = part[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif part.count(":") == 1:
        host, port_text = part.split(":")
    else:
        host, port_text = part, ""
    if not host:
        raise ConfigError(
            f"store URL {_mask(url)!r} has an empty host in {part!r}: write host:port"
        )
    if not port_text:
        return host, _DEFAULT_PORT
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(
            f"store URL {_mask(url)!r} has port {port_text!r} in {part!r}; a port is a number "
            "from 1 to 65535, e.g. 127.0.0.1:10800"
        )
    return host, port


def _parse_flag(url: str, name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"store URL {_mask(url)!r}: option {name}={value!r} must be 1 or 0")


def _parse_seconds(url: str, name: str, value: str | None, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number > 0:
        raise ConfigError(
            f"store URL {_mask(url)!r}: option {name}={value!r} must be a positive number"
        )
    return number
