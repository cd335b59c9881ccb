"""The connection to the cluster: one AioClient per event loop, every request through one
retry loop, every pyignite error translated once (docs/ignite.md, "Failures").

Connecting and requesting share the loop in :meth:`Connector.request`: connection errors
and timeouts (while connecting or while a request is in flight) are retried with backoff
for ``retry`` seconds on a fresh connection, then raise
:class:`~perper.errors.StoreUnavailableError` naming the addresses; a request never waits
longer than ``timeout`` seconds for its answer; server-side errors raise
:class:`~perper.errors.StoreError`. Conditional writes whose first attempt had an unknown
outcome verify what is stored (:meth:`Connector.conditional`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyignite import AioClient
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

from perper.errors import FormatError, StoreClosedError, StoreError, StoreUnavailableError
from perper.store.ignite.layout import FORMAT, META_CACHE, SEGMENTS_CACHE
from perper.store.ignite.wire import Requests

__all__ = ["Connection", "Connector"]

# pyignite logs every failed connection attempt with a traceback and installs no handler,
# so without one Python's last-resort handler prints them on stderr. Those failures reach
# callers as StoreUnavailableError; the records still go to handlers an app configures.
logging.getLogger("pyignite").addHandler(logging.NullHandler())

# What a request can fail with when the connection, not the request, is at fault.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ReconnectError,
    ParseError,
    asyncio.TimeoutError,
)

T = TypeVar("T")


class _ConnectFailed(Exception):
    """One connection attempt failed in a way worth retrying (``cause`` says how)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


_RETRIED: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, _ConnectFailed)


@dataclass(slots=True)
class Connection:
    """An open client and its two caches, bound to the event loop that opened it."""

    client: AioClient
    segments: Any
    meta: Any
    loop: asyncio.AbstractEventLoop
    #: The hot requests on each cache, encoded by wire.py rather than by pyignite.
    segment_requests: Requests = field(init=False)
    meta_requests: Requests = field(init=False)
    # The request timeout, kept by one watchdog timer per connection rather than an
    # asyncio.timeout per request (measured: most of the Python time an append spent
    # outside encoding): the task awaiting each request in flight, with its deadline.
    inflight: dict[asyncio.Task[Any], float] = field(default_factory=dict)
    expired: set[asyncio.Task[Any]] = field(default_factory=set)
    watchdog: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.segment_requests = Requests(self.client, self.segments)
        self.meta_requests = Requests(self.client, self.meta)

    def cache(self, name: str) -> Any:
        return self.segments if name == SEGMENTS_CACHE else self.meta

    def requests(self, name: str) -> Requests:
        return self.segment_requests if name == SEGMENTS_CACHE else self.meta_requests

    async def request(self, call: Callable[[Connection], Awaitable[T]], timeout: float) -> T:
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


class Connector:
    """Opens the connection lazily (within the running event loop) and runs requests.

    Args:
        addresses: ``(host, port)`` of thin-client endpoints.
        client_args: pyignite ``AioClient`` arguments (credentials, SSL).
        namespace: whose format record to check on connect.
        timeout: seconds to wait for one request's answer.
        retry: seconds to keep retrying connection failures.
        partition_aware: route each key to its primary node.
        url: the store's masked URL, for messages.
    """

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        client_args: dict[str, Any],
        *,
        namespace: str,
        timeout: float,
        retry: float,
        partition_aware: bool,
        url: str,
    ) -> None:
        self.addresses = addresses
        self.where = ",".join(f"{host}:{port}" for host, port in addresses)
        self.client_args = client_args
        self.namespace = namespace
        self.timeout = timeout
        self.retry = retry
        self.partition_aware = partition_aware
        self.url = url
        self.conn: Connection | None = None
        self.closed = False
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    # ---------------------------------------------------------------- requests

    async def request(
        self, what: str, call: Callable[[Connection], Awaitable[T]]
    ) -> tuple[T, bool]:
        """Run one request, connecting if needed; retry connection failures for ``retry``
        seconds (the one retry loop of the Ignite store).

        Returns the result and whether an earlier attempt failed with an unknown outcome
        (it may have been applied: conditional writes then verify what is stored).
        """
        if self.closed:
            raise StoreClosedError(f"{self.url}: the store is closed; open a new one")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry
        delay = 0.02
        uncertain = False
        while True:
            conn: Connection | None = None
            try:
                conn = await self._connection(loop, deadline)
                return await conn.request(call, self.timeout), uncertain
            except _RETRIED as error:
                connecting = conn is None
                if conn is not None:
                    uncertain = True
                    # The connection may be wedged (timeout) or half dead: start over.
                    if self.conn is conn:
                        self.conn = None
                        await close_quietly(conn.client)
                if loop.time() + delay >= deadline:
                    cause = error.cause if isinstance(error, _ConnectFailed) else error
                    if connecting:
                        message = (
                            f"{self.url}: cannot reach an Ignite cluster at {self.where} "
                            f"(gave up after {self.retry:g}s: {describe(cause)}); start one "
                            "with 'perper fabric start' or fix the host:port in the URL"
                        )
                    else:
                        message = (
                            f"{self.url}: Ignite at {self.where} did not answer {what} (gave "
                            f"up after {self.retry:g}s: {describe(cause)}); check that the "
                            "cluster is up ('perper fabric status')"
                        )
                    raise StoreUnavailableError(message) from cause
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
            except (CacheError, ClusterError) as error:
                message = str(error)
                kind = StoreUnavailableError if "inactive" in message.lower() else StoreError
                raise kind(
                    f"{self.url}: Ignite at {self.where} refused {what}: {message}"
                ) from error

    async def get(self, cache: str, key: str, what: str) -> Any:
        value, _ = await self.request(what, lambda c: c.requests(cache).get(key))
        return value

    async def get_all(self, cache: str, keys: list[str], what: str) -> dict[str, Any]:
        if len(keys) == 1:
            value = await self.get(cache, keys[0], what)
            return {} if value is None else {keys[0]: value}
        found, _ = await self.request(what, lambda c: c.requests(cache).get_all(keys))
        return found

    async def contains(self, cache: str, key: str, what: str) -> bool:
        """Whether ``key`` is stored, without fetching its value."""
        found, _ = await self.request(what, lambda c: c.cache(cache).contains_key(key))
        return bool(found)

    async def put(self, cache: str, key: str, value: bytes, what: str) -> None:
        await self.request(what, lambda c: c.requests(cache).put(key, value))

    async def remove_keys(self, cache: str, keys: list[str], what: str) -> None:
        """Delete ``keys`` (absent ones are fine: deleting is idempotent)."""
        if keys:
            await self.request(what, lambda c: c.cache(cache).remove_keys(keys))

    async def put_if_absent(self, cache: str, key: str, value: bytes, what: str) -> bool:
        """True if ``value`` is now stored at ``key`` because of us (or an equal write)."""
        return await self.conditional(
            cache, key, value, what, lambda c: c.requests(cache).put_if_absent(key, value)
        )

    async def replace(self, cache: str, key: str, old: bytes, new: bytes, what: str) -> bool:
        """Compare-and-set: True if ``key`` held ``old`` and now holds ``new`` because of us."""
        return await self.conditional(
            cache, key, new, what, lambda c: c.requests(cache).replace_if_equals(key, old, new)
        )

    async def conditional(
        self,
        cache: str,
        key: str,
        written: bytes,
        what: str,
        call: Callable[[Connection], Awaitable[bool]],
    ) -> bool:
        """Run a conditional write; if an earlier attempt's outcome is unknown (it may have
        landed), whether ``key`` now holds ``written`` decides."""
        done, uncertain = await self.request(what, call)
        if done:
            return True
        if uncertain:
            return bool(await self.get(cache, key, what) == written)
        return False

    # -------------------------------------------------------------- connecting

    async def _connection(self, loop: asyncio.AbstractEventLoop, deadline: float) -> Connection:
        conn = self.conn
        if conn is not None and conn.loop is loop:
            return conn
        if self.closed:
            raise StoreClosedError(f"{self.url}: the store is closed; open a new one")
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            conn = self.conn
            if conn is not None and conn.loop is loop:
                return conn
            if conn is not None:  # opened under another event loop: unusable here
                self.conn = None
                abandon(conn)
            self.conn = await self._connect(loop, deadline)
            return self.conn

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> Connection:
        """One connection attempt; failures worth retrying raise :class:`_ConnectFailed`."""
        remaining = max(deadline - loop.time(), 0.05)
        client = AioClient(
            partition_aware=self.partition_aware,
            handshake_timeout=min(remaining, self.timeout),
            **self.client_args,
        )
        try:
            async with asyncio.timeout(min(remaining, self.timeout)):
                await client.connect(self.addresses)
                return await self._prepare(client, loop)
        except AuthenticationError as error:
            await close_quietly(client)
            raise StoreUnavailableError(
                f"{self.url}: Ignite at {self.where} refused the credentials "
                f"({error.message}); check username and password"
            ) from error
        except (*CONNECTION_ERRORS, HandshakeError, CacheError, ClusterError) as error:
            await close_quietly(client)
            raise _ConnectFailed(error) from error
        except BaseException:
            await close_quietly(client)
            raise

    async def _prepare(self, client: AioClient, loop: asyncio.AbstractEventLoop) -> Connection:
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
        return Connection(client, segments, meta, loop)

    async def close(self) -> None:
        """Close the connection (idempotent); later requests raise StoreClosedError."""
        self.closed = True
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if conn.loop is running:
            await close_quietly(conn.client)
        else:
            abandon(conn)


async def close_quietly(client: AioClient) -> None:
    with contextlib.suppress(Exception):
        await client.close()


def abandon(conn: Connection) -> None:
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


def describe(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
