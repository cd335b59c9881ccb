"""A Hypothesis state machine: two producers ("processes") per store kind, sending keyed
and unkeyed items alone and concurrently, against a plain model of what a stream holds."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import perper
from perper.errors import SealedError
from perper.store import LogStore, open_store

STREAM = "r/events"
KEYS = st.lists(st.one_of(st.none(), st.sampled_from([f"k{i}" for i in range(12)])), max_size=8)


class ProducersAgreeWithAModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        memory = open_store("memory://")
        sqlite = f"sqlite:///{os.path.join(self.tmp.name, 'p.db')}"
        # Each kind: two stores on the same storage, as two processes would open it.
        self.kinds: list[tuple[LogStore, LogStore]] = [
            (memory, memory),
            (open_store(sqlite), open_store(sqlite)),
        ]
        if os.environ.get("PERPER_TEST_IGNITE"):
            url = f"{os.environ['PERPER_TEST_IGNITE']}?namespace=pm-{os.urandom(6).hex()}"
            self.kinds.append((open_store(url), open_store(url)))
        self.producers = [
            (perper.Producer(a, STREAM, max_batch=5), perper.Producer(b, STREAM, max_batch=3))
            for a, b in self.kinds
        ]
        self.counter = itertools.count()
        self.sealed = False
        # Per kind: what the stream must hold (concurrent sends may order differently).
        self.models: list[list[list[Any]]] = [[] for _ in self.kinds]

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def items_for(self, keys: list[str | None]) -> list[list[Any]]:
        return [[key, next(self.counter)] for key in keys]

    @staticmethod
    def expected_seqs(model: list[list[Any]], items: list[list[Any]]) -> list[int]:
        """Plan ``items`` against ``model`` as a stream must, extending ``model``."""
        where = {key: seq for seq, (key, _) in enumerate(model) if key is not None}
        seqs = []
        for item in items:
            key = item[0]
            if key is not None and key in where:
                seqs.append(where[key])
                continue
            if key is not None:
                where[key] = len(model)
            seqs.append(len(model))
            model.append(item)
        return seqs

    @rule(which=st.integers(0, 1), keys=KEYS)
    def send_many(self, which: int, keys: list[str | None]) -> None:
        items = self.items_for(keys)
        for producers, model in zip(self.producers, self.models, strict=True):
            producer = producers[which]
            before = list(model)
            expected = self.expected_seqs(model, items)
            if self.sealed and len(model) > len(before):
                model[:] = before
                try:
                    self.run(producer.send_many(items, keys=keys))
                except SealedError:
                    continue
                raise AssertionError("a sealed stream took new items")
            assert self.run(producer.send_many(items, keys=keys)) == expected

    @rule(keys=st.lists(KEYS, min_size=2, max_size=6))
    def send_concurrently(self, keys: list[list[str | None]]) -> None:
        if self.sealed:
            return
        sends = [self.items_for(batch) for batch in keys]
        for producers, model in zip(self.producers, self.models, strict=True):

            async def race(producers: tuple[perper.Producer, perper.Producer] = producers) -> Any:
                calls = [
                    producers[i % 2].send(item, key=item[0])
                    for i, batch in enumerate(sends)
                    for item in batch
                ]
                return await asyncio.gather(*calls)

            seqs = self.run(race())
            stored = self.run(self._stored(producers[0].store))
            sent = [item for batch in sends for item in batch]
            for item, seq in zip(sent, seqs, strict=True):
                if item[0] is None:
                    assert stored[seq] == item  # an unkeyed item: itself, once
                else:
                    assert stored[seq][0] == item[0]  # the one item holding its key
            # New: every unkeyed item, and for each key not stored before one of the items
            # sent with it (which one depends on who won the race).
            new = stored[len(model) :]
            known = {key for key, _ in model if key is not None}
            assert sorted(i[1] for i in new if i[0] is None) == sorted(
                i[1] for i in sent if i[0] is None
            )
            new_keyed = [i for i in new if i[0] is not None]
            assert sorted(i[0] for i in new_keyed) == sorted(
                {i[0] for i in sent if i[0] is not None} - known
            )
            assert all(item in sent for item in new_keyed)
            model[:] = stored

    @rule()
    def seal(self) -> None:
        for producers, _ in zip(self.producers, self.models, strict=True):
            self.run(producers[1].seal())
        self.sealed = True

    async def _stored(self, store: LogStore) -> list[Any]:
        return [item async for _, item in store.read(STREAM)]

    @invariant()
    def every_store_holds_its_model_with_each_key_once(self) -> None:
        for (store, other), model in zip(self.kinds, self.models, strict=True):
            for view in (store, other):
                assert self.run(self._stored(view)) == model
            keys = [key for key, _ in model if key is not None]
            assert len(keys) == len(set(keys))

    def teardown(self) -> None:
        for store, other in self.kinds:
            self.run(store.close())
            self.run(other.close())
        self.loop.close()
        self.tmp.cleanup()


ProducersAgreeWithAModel.TestCase.settings = settings(
    max_examples=40, stateful_step_count=15, deadline=None
)
test_producers_agree_with_a_model = ProducersAgreeWithAModel.TestCase
