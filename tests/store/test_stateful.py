"""A Hypothesis state machine: every store kind and a plain model agree on every step."""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from perper.errors import ConflictError, GapError, SealedError
from perper.store import LogStore, open_store

STREAMS = st.sampled_from(["a", "b", "r/c-0"])
ITEMS = st.lists(
    st.one_of(st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2)),
    max_size=6,
)


def _outcome(error: BaseException | None) -> str:
    return type(error).__name__ if error else "ok"


class StoresAgreeWithAModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        urls = ["memory://", f"sqlite:///{os.path.join(self.tmp.name, 'm.db')}"]
        if os.environ.get("PERPER_TEST_IGNITE"):
            urls.append(f"{os.environ['PERPER_TEST_IGNITE']}?namespace=sm-{os.urandom(6).hex()}")
        self.stores: list[LogStore] = [open_store(url) for url in urls]
        self.model: dict[str, list[Any]] = {}
        self.sealed: set[str] = set()
        self.meta: dict[str, tuple[int, Any]] = {}

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def each(self, call: Any) -> list[tuple[str, Any]]:
        outcomes = []
        for store in self.stores:
            try:
                outcomes.append(("ok", self.run(call(store))))
            except (ConflictError, GapError, SealedError) as error:
                outcomes.append((_outcome(error), None))
        return outcomes

    @rule(stream=STREAMS, items=ITEMS, back=st.integers(0, 4), skip=st.booleans())
    def append(self, stream: str, items: list[Any], back: int, skip: bool) -> None:
        stored = self.model.setdefault(stream, [])
        seq = max(len(stored) - back, 0) + (1 if skip and items else 0)
        expected: tuple[str, Any]
        if seq > len(stored):
            expected = ("GapError", None)
        else:
            overlap = stored[seq : seq + len(items)]
            normal = [list(i) if isinstance(i, tuple) else i for i in items]
            if overlap != normal[: len(overlap)]:
                expected = ("ConflictError", None)
            elif len(items) > len(overlap) and stream in self.sealed:
                expected = ("SealedError", None)
            else:
                stored.extend(normal[len(overlap) :])
                expected = ("ok", max(len(stored), seq))
        outcomes = self.each(lambda s: s.append(stream, seq, items))
        assert outcomes == [expected] * len(self.stores), (seq, items, outcomes)

    @rule(stream=STREAMS)
    def seal(self, stream: str) -> None:
        self.sealed.add(stream)
        self.model.setdefault(stream, [])
        self.each(lambda s: s.seal(stream))

    @rule(stream=STREAMS, start=st.integers(0, 8), length=st.none() | st.integers(0, 8))
    def read(self, stream: str, start: int, length: int | None) -> None:
        stop = None if length is None else start + length
        expected = self.model.get(stream, [])[start:stop]

        async def read(store: LogStore) -> list[Any]:
            return [item async for _, item in store.read(stream, start=start, stop=stop)]

        assert self.each(read) == [("ok", expected)] * len(self.stores)

    @rule(
        key=st.sampled_from(["x", "y"]), value=st.integers(-(2**63), 2**63 - 1), stale=st.booleans()
    )
    def compare_and_set(self, key: str, value: int, stale: bool) -> None:
        version = self.meta.get(key, (0, None))[0]
        asked = version + 1 if stale else version
        outcomes = self.each(lambda s: s.meta_cas("leases", key, value, version=asked))
        if stale:
            assert outcomes == [("ok", None)] * len(self.stores)
        else:
            self.meta[key] = (version + 1, value)
            assert outcomes == [("ok", version + 1)] * len(self.stores)

    @invariant()
    def heads_agree(self) -> None:
        for stream, items in self.model.items():
            heads = self.each(lambda s, name=stream: s.head(name))
            assert heads == [("ok", len(items))] * len(self.stores)

    @precondition(lambda self: bool(self.meta))
    @invariant()
    def metadata_agrees(self) -> None:
        for key, (version, value) in self.meta.items():
            got = self.each(lambda s, k=key: s.meta_get("leases", k))
            assert [(m.version, m.value) for _, m in got] == [(version, value)] * len(self.stores)

    def teardown(self) -> None:
        for store in self.stores:
            self.run(store.close())
        self.loop.close()
        self.tmp.cleanup()


StoresAgreeWithAModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)
test_stores_agree_with_a_model = StoresAgreeWithAModel.TestCase
