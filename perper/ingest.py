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
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from perper.errors import ConfigError, EncodeError
from perper.store.base import LogStore

__all__ = ["Producer"]


class _Request:
    __slots__ = ("future", "items", "keys")

    def __init__(
        self, items: list[Any], keys: list[str | None], future: asyncio.Future[list[int]]
    ) -> None:
        self.items = items
        self.keys = keys
        self.future = future


class Producer:
    """Appends items from outside a run to the stream ``stream`` of ``store``.

    Args:
        store: an open store (``perper.open_store(url)``).
        stream: the stream's full name, ``"{run}/{name}"`` for a run's ingest stream
            (what ``ctx.ingest(name)`` reads).
        max_batch: how many items of concurrent sends one store write holds at most (a
            single ``send_many`` larger than that is written as one segment on its own).

    A Producer is an async context manager; leaving it waits for the sends in flight.
    """

    def __init__(self, store: LogStore, stream: str, *, max_batch: int = 1000) -> None:
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
        self._queue: list[_Request] = []
        self._committer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Producer {self.stream!r} on {self.store.url}>"

    async def send(self, item: Any, *, key: str | None = None) -> int:
        """Append ``item`` and return its seq once it is durable.

        With a ``key`` the stream already holds, nothing is appended and the stored seq is
        returned (see the module's docstring).

        Raises:
            SealedError: the stream is sealed.
            EncodeError: ``item`` is not msgpack-able.
            StoreError: the store refused or failed the write (the item may or may not be
                stored: send it again with the same key).
        """
        if key is not None and type(key) is not str:
            raise ConfigError(f"send(key={key!r}): a key is a str (or None for none)")
        return (await self._submit([item], [key]))[0]

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
        return await self._submit(batch, key_list)

    async def seal(self) -> None:
        """Finish the stream once the sends in flight are stored: readers' loops end at
        its last item, and later sends raise :class:`~perper.errors.SealedError`."""
        await self.flush()
        await self.store.seal(self.stream)

    async def flush(self) -> None:
        """Wait until every send made so far has been written (or has failed)."""
        while self._committer is not None and not self._committer.done():
            await asyncio.shield(self._committer)

    async def _submit(self, items: list[Any], keys: list[str | None]) -> list[int]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(items, keys, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(self._commit())
        return await future

    async def _commit(self) -> None:
        # One task writes: every send queued while a write is in flight goes into the next
        # write. Senders are woken in the order they were queued.
        queue = self._queue
        while queue:
            taken = 1
            size = len(queue[0].items)
            while taken < len(queue) and size + len(queue[taken].items) <= self.max_batch:
                size += len(queue[taken].items)
                taken += 1
            batch = queue[:taken]
            del queue[:taken]
            if taken == 1:
                items, keys = batch[0].items, batch[0].keys
            else:
                items = [item for request in batch for item in request.items]
                keys = [key for request in batch for key in request.keys]
            try:
                seqs = await self.store.append_keyed(self.stream, items, keys)
            except EncodeError as error:
                if taken > 1:
                    # One sender's bad item must not fail the others: write each alone.
                    queue[0:0] = batch
                    await self._commit_alone(taken)
                else:
                    _fail(batch, error)
                continue
            except Exception as error:
                _fail(batch, error)
                continue
            position = 0
            for request in batch:
                count = len(request.items)
                if not request.future.done():
                    request.future.set_result(seqs[position : position + count])
                position += count

    async def _commit_alone(self, count: int) -> None:
        for _ in range(count):
            request = self._queue.pop(0)
            try:
                seqs = await self.store.append_keyed(self.stream, request.items, request.keys)
            except Exception as error:
                if not request.future.done():
                    request.future.set_exception(error)
            else:
                if not request.future.done():
                    request.future.set_result(seqs)

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.flush()


def _fail(batch: list[_Request], error: BaseException) -> None:
    for request in batch:
        if not request.future.done():
            request.future.set_exception(error)
