"""Producer: the outside world's way into a stream.

An **ingest stream** is how events from outside (clicks, orders, sensor readings) enter a
run: a program outside the run sends them with a :class:`Producer`, and the run's
functions read them with ``ctx.read(ctx.ingest(name))``. The order in which they are
stored is the one nondeterministic input of the run, and it is recorded: recovery and
replay read the same items in the same order.

::

    async with perper.open_store(url) as store:
        async with perper.Producer(store, "shop/clicks") as clicks:
            seq = await clicks.send({"user": 7, "page": "/"}, key="evt-0001")
            seqs = await clicks.send_many(events, keys=ids)
            await clicks.seal()

Guarantees:

* **Durable on return**: ``send`` returns the item's seq once the store has committed it.
* **Group commit**: sends that wait at the same time are written together, as one segment
  in one store write (up to ``max_batch`` items), so many concurrent senders awaiting
  durability still get batch throughput.
* **Idempotent by key**: a key the stream already holds appends nothing and returns the
  seq stored under it, *whatever item is stored there* (the item sent again is not
  compared: a key names an event, not its content). The store keeps the keys with the
  segment that holds the items, atomically, so a crash loses or duplicates nothing: a
  producer restarted after a crash may resend everything with the same keys. Items sent
  without a key are at-least-once: a send whose outcome was unknown (a crash, a timeout)
  and is sent again may be stored twice.
* **Several producers**, in one process or several, may share a stream: every item lands
  once, in commit order; a producer never fails because another moved the head.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import starmap
from types import TracebackType
from typing import Any

from perper.errors import ConfigError, EncodeError
from perper.store.base import LogStore
from perper.store.index import normalize_index

__all__ = ["IngestResult", "Producer", "ingest_lines"]

#: A queued send: the future of a ``send`` (one item, one seq), or the future and the
#: number of items of a ``send_many`` (a list of seqs).
_Waiter = asyncio.Future[Any] | tuple[asyncio.Future[Any], int]

#: What ``loop.create_future()`` makes on every loop perper runs on (asyncio's own, the
#: simulator's), built directly: that method is a Python-level call, once per send.
_Future = asyncio.Future


class Producer:
    """Appends items from outside a run to the stream ``stream`` of ``store``.

    Args:
        store: an open store (``perper.open_store(url)``).
        stream: the stream's full name, ``"{run}/{name}"`` for a run's ingest stream
            (what ``ctx.ingest(name)`` reads).
        max_batch: how many items of concurrent sends one store write holds at most (a
            single ``send_many`` larger than that is written as one segment on its own).
        index: the stream's indexed fields, such as ``{"user": int, "amount": float}``
            (see ``ctx.query``); stored with the stream when the producer is entered.

    A Producer is an async context manager; leaving it waits for the sends in flight.

    Raises:
        ConfigError: a bad stream name, ``max_batch`` or ``index`` declaration.
    """

    def __init__(
        self,
        store: LogStore,
        stream: str,
        *,
        max_batch: int = 1000,
        index: Mapping[str, type] | None = None,
    ) -> None:
        if not isinstance(stream, str) or not stream or "#" in stream:
            raise ConfigError(
                f"Producer stream {stream!r}: name a stream such as 'shop/clicks' "
                "(a run's ingest stream is '{run}/{name}'; '#' is reserved)"
            )
        if max_batch < 1:
            raise ConfigError(f"Producer max_batch={max_batch}: give a positive number of items")
        self.store = store
        self.stream = stream
        self.max_batch = max_batch
        #: The stream's indexed fields (``index=``), declared on entering the producer.
        self.index = None if index is None else normalize_index(index, where="Producer index")
        # What waits for the next write: the items and keys, and per send its waiter.
        self._items: list[Any] = []
        self._keys: list[str | None] = []
        self._waiters: list[_Waiter] = []
        self._keyed = False  # whether a queued send has a key
        self._lists = False  # whether a queued waiter is a send_many's (a tuple)
        self._writing = False  # a write is in flight (the committer's or a direct one)
        self._direct: asyncio.Future[None] | None = None  # done when a direct write ends
        self._committer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the committer's loop

    def __repr__(self) -> str:
        return f"<Producer {self.stream!r} on {self.store.url}>"

    def send(self, item: Any, *, key: str | None = None) -> Awaitable[int]:
        """Append ``item``; awaiting the result gives its seq once it is durable.

        With a ``key`` the stream already holds, nothing is appended and the stored seq is
        returned (see the module's docstring). The item is queued at the call, so sends
        made one after the other are stored in that order.

        Raises (when awaited):
            SealedError: the stream is sealed.
            EncodeError: ``item`` is not msgpack-able.
            StoreError: the store refused or failed the write (the item may or may not be
                stored: send it again with the same key).
            ConfigError: ``key`` is not a str (raised at the call).
        """
        if key is not None and type(key) is not str:
            raise ConfigError(f"send(key={key!r}): a key is a str (or None for none)")
        committer = self._committer
        if committer is not None and not committer.done():
            # The committer will take this send: the future belongs to its loop, which
            # is running it (asyncio.get_running_loop() costs a getpid() system call).
            future: asyncio.Future[int] = _Future(loop=self._loop)
        else:
            loop = self._loop = asyncio.get_running_loop()
            future = _Future(loop=loop)
            if not self._writing:  # _wake_committer, inlined: this runs once per item
                self._committer = loop.create_task(self._commit())
        self._items.append(item)
        self._keys.append(key)
        if key is not None:
            self._keyed = True
        self._waiters.append(future)
        return future

    async def send_many(
        self, items: Iterable[Any], *, keys: Sequence[str | None] | None = None
    ) -> list[int]:
        """Append ``items`` in order and return their seqs once all are durable.

        ``keys`` gives one key (or None) per item. The items are stored consecutively, in
        one segment, unless their keys were already stored.

        Raises:
            ConfigError: ``keys`` does not have one entry per item.
            SealedError, EncodeError, StoreError: as :meth:`send`.
        """
        batch = list(items)
        if keys is None:
            key_list: list[str | None] = [None] * len(batch)
        else:
            key_list = list(keys)
            if len(key_list) != len(batch):
                raise ConfigError(
                    f"send_many to {self.stream!r}: {len(batch)} items but {len(key_list)} "
                    "keys; pass one key (or None) per item"
                )
            for key in key_list:
                if key is not None and type(key) is not str:
                    raise ConfigError(f"send_many(keys=[..., {key!r}, ...]): keys are str")
        if not batch:
            return []
        if not self._writing and not self._waiters:
            # Nothing queued or in flight: write from this task, without a committer.
            self._writing = True
            direct = self._direct = asyncio.get_running_loop().create_future()
            try:
                return await self.store.append_keyed(
                    self.stream, batch, None if keys is None else key_list
                )
            finally:
                self._writing = False
                direct.set_result(None)
                if self._waiters:
                    self._wake_committer()
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._items.extend(batch)
        self._keys.extend(key_list)
        if keys is not None:
            self._keyed = True
        self._lists = True
        self._waiters.append((future, len(batch)))
        self._wake_committer()
        return await future

    async def seal(self) -> None:
        """Finish the stream once the sends in flight are stored: readers' loops end at
        its last item, and later sends raise :class:`~perper.errors.SealedError`."""
        await self.flush()
        await self.store.seal(self.stream)

    async def flush(self) -> None:
        """Wait until every send made so far has been written (or has failed)."""
        while True:
            if self._direct is not None and not self._direct.done():
                await asyncio.shield(self._direct)
            elif self._committer is not None and not self._committer.done():
                await asyncio.shield(self._committer)
            else:
                return

    def _wake_committer(self) -> None:
        if (self._committer is None or self._committer.done()) and not self._writing:
            loop = self._loop = asyncio.get_running_loop()
            self._committer = loop.create_task(self._commit())

    def _take(self) -> tuple[list[Any], list[str | None] | None, list[_Waiter], bool]:
        """Take the next write's share of the queue: whole sends, at most ``max_batch``
        items unless the first send alone holds more; and whether a send_many is among
        them (else every waiter is a bare future)."""
        items, keys, waiters = self._items, self._keys, self._waiters
        if len(items) <= self.max_batch:
            keyed, self._keyed = self._keyed, False
            lists, self._lists = self._lists, False
            self._items, self._keys, self._waiters = [], [], []
            return items, (keys if keyed else None), waiters, lists
        taken, size = 1, _count(waiters[0])
        while taken < len(waiters) and size + _count(waiters[taken]) <= self.max_batch:
            size += _count(waiters[taken])
            taken += 1
        batch = items[:size], (keys[:size] if self._keyed else None), waiters[:taken], True
        del items[:size], keys[:size], waiters[:taken]
        return batch

    async def _commit(self) -> None:
        # One task writes: every send queued while a write is in flight goes into the next
        # write. Senders are woken in the order they were queued. (A send_many written
        # from its caller's task while this one waited ends the loop: that write's end
        # starts the next committer, so writes stay in the order of the sends.)
        while self._waiters and not self._writing:
            items, keys, waiters, lists = self._take()
            self._writing = True
            try:
                seqs = await self.store.append_keyed(self.stream, items, keys)
            except EncodeError as error:
                if len(waiters) == 1:
                    _fail(waiters, error)
                else:
                    await self._commit_alone(items, keys, waiters)
                continue
            except Exception as error:
                _fail(waiters, error)
                continue
            except BaseException:
                # Cancelled (the loop is shutting down): no sender may wait forever.
                _cancel(waiters)
                _cancel(self._waiters)
                self._items, self._keys, self._waiters = [], [], []
                raise
            finally:
                self._writing = False
            if lists:
                _resolve(waiters, seqs)
            else:
                _resolve_futures(waiters, seqs)  # type: ignore[arg-type]
            if not self._waiters:
                # One turn of the loop, so the senders just woken can send again: their
                # sends join this task's next write instead of each round starting a task.
                try:
                    await asyncio.sleep(0)
                except BaseException:
                    _cancel(self._waiters)
                    self._items, self._keys, self._waiters = [], [], []
                    raise

    async def _commit_alone(
        self,
        items: list[Any],
        keys: list[str | None] | None,
        waiters: list[_Waiter],
    ) -> None:
        """Write each send of a batch on its own: one sender's bad item must not fail
        the others."""
        position = 0
        for waiter in waiters:
            end = position + _count(waiter)
            try:
                seqs = await self.store.append_keyed(
                    self.stream, items[position:end], None if keys is None else keys[position:end]
                )
            except Exception as error:
                _fail([waiter], error)
            else:
                _resolve([waiter], seqs)
            position = end

    async def declare_index(self) -> None:
        """Store the ``index=`` declaration with the stream (``async with`` does it on
        entry; call it before sending if the producer is not entered).

        Raises:
            ConfigError: the stream is indexed on other fields.
        """
        if self.index is not None:
            await self.store.declare_index(self.stream, self.index)

    async def __aenter__(self) -> Producer:
        await self.declare_index()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()


def _count(waiter: _Waiter) -> int:
    return waiter[1] if isinstance(waiter, tuple) else 1


def _future(waiter: _Waiter) -> asyncio.Future[Any]:
    return waiter[0] if isinstance(waiter, tuple) else waiter


def _fail(waiters: list[_Waiter], error: BaseException) -> None:
    for waiter in waiters:
        future = _future(waiter)
        if not future.done():
            future.set_exception(error)


def _cancel(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        _future(waiter).cancel()


def _resolve_futures(futures: list[asyncio.Future[int]], seqs: list[int]) -> None:
    """Give each send's future its seq (one item per future): the loop runs at C speed,
    and a future whose sender was cancelled is skipped (``set_result`` raises on it, and
    both iterators have already moved past it)."""
    remaining = zip(futures, seqs, strict=True)
    while True:
        try:
            deque(starmap(_set_result, remaining), 0)
        except asyncio.InvalidStateError:
            continue
        return


_set_result = _Future.set_result


def _resolve(waiters: list[_Waiter], seqs: list[int]) -> None:
    if len(waiters) == len(seqs):  # one item per waiter (the usual case: only sends)
        for waiter, seq in zip(waiters, seqs, strict=True):
            try:
                if isinstance(waiter, tuple):
                    waiter[0].set_result([seq])
                else:
                    waiter.set_result(seq)
            except asyncio.InvalidStateError:
                pass  # its sender was cancelled (asking done() first costs a call per item)
        return
    position = 0
    for waiter in waiters:
        if isinstance(waiter, tuple):
            future, count = waiter
            result: Any = seqs[position : position + count]
        else:
            future, count = waiter, 1
            result = seqs[position]
        if not future.done():
            future.set_result(result)
        position += count


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :func:`ingest_lines` did.

    Attributes:
        lines: lines read (blank lines included).
        sent: items sent (each durable; those whose key was already stored appended
            nothing).
        skipped: ``(line number, reason)`` of the bad lines skipped (``skip_bad``).
        head: the stream's length afterwards.
    """

    lines: int
    sent: int
    skipped: tuple[tuple[int, str], ...]
    head: int


async def ingest_lines(
    producer: Producer,
    lines: Iterable[bytes],
    *,
    source: str,
    key_field: str | None = None,
    skip_bad: bool = False,
    batch: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> IngestResult:
    """Send one item per JSON line of ``lines`` (blank lines are skipped) through
    ``producer``, ``batch`` lines per durable ``send_many``.

    Each item's key is ``str(item[key_field])``, or without ``key_field``
    ``"{source}:{line number}"``, so sending the same source again appends nothing twice
    and resumes where an interrupted run stopped.

    Args:
        progress: called as ``progress(bytes read, items sent)`` after each batch.

    Raises:
        ConfigError: a line is not JSON, or (with ``key_field``) not an object holding
            that field, and ``skip_bad`` is False. The lines before it are sent (and
            durable), none after it.
    """
    items: list[Any] = []
    keys: list[str | None] = []
    skipped: list[tuple[int, str]] = []
    read = sent = number = 0
    for number, line in enumerate(lines, 1):
        read += len(line)
        text = line.strip()
        if not text:
            continue
        try:
            item = json.loads(text)
            if key_field is None:
                key = f"{source}:{number}"
            elif type(item) is dict and key_field in item:
                key = str(item[key_field])
            else:
                raise ValueError(f"no field {key_field!r} (--key) in this line")
        except ValueError as error:
            reason = str(error)
            if skip_bad:
                skipped.append((number, reason))
                continue
            if items:
                await producer.send_many(items, keys=keys)
                sent += len(items)
            raise ConfigError(
                f"{source} line {number} is not a JSON item ({reason}): {text[:80]!r}; "
                f"lines 1-{number - 1} were sent, none after it. Fix the line and run the "
                "same command again (sent lines are not sent twice), or pass --skip-bad"
            ) from None
        items.append(item)
        keys.append(key)
        if len(items) >= batch:
            await producer.send_many(items, keys=keys)
            sent += len(items)
            items, keys = [], []
            if progress is not None:
                progress(read, sent)
    if items:
        await producer.send_many(items, keys=keys)
        sent += len(items)
    if progress is not None:
        progress(read, sent)
    head = await producer.store.head(producer.stream)
    return IngestResult(number, sent, tuple(skipped), head)
