"""A store that fails now and then pauses executions; it never fails the run."""

from __future__ import annotations

from typing import Any

import perper
from perper.errors import StoreUnavailableError
from perper.runtime import Runtime
from perper.store.memory import MemoryStore
from tests.conftest import EXAMPLES

basic = perper.load_app(EXAMPLES / "basic.py")


class FlakyStore(MemoryStore):
    """Refuses every ``every``-th write, like a store that times out now and then."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.writes = 0
        self.refused = 0

    def _maybe_fail(self) -> None:
        self.writes += 1
        if self.writes % self.every == 0:
            self.refused += 1
            raise StoreUnavailableError(f"{self.url}: simulated timeout on write {self.writes}")

    async def write_segment(
        self, stream: str, seq: int, count: int, data: bytes, epoch: int
    ) -> None:
        self._maybe_fail()
        await super().write_segment(stream, seq, count, data, epoch)

    async def meta_cas(self, table: str, key: str, value: Any, *, version: int) -> int | None:
        self._maybe_fail()
        return await super().meta_cas(table, key, value, version=version)


async def test_transient_store_errors_delay_a_run_but_lose_and_duplicate_nothing() -> None:
    reference = MemoryStore()
    await Runtime(reference, basic, batch_size=10).run("r", {"count": 500})
    flaky = FlakyStore(every=7)
    result = await Runtime(flaky, basic, batch_size=10, lease_ttl=0.1).run("r", {"count": 500})
    assert result.ok
    assert flaky.refused > 5
    for stream in ["r/generator-0", "r/processor-1"]:
        assert [i async for _, i in flaky.read(stream)] == [
            i async for _, i in reference.read(stream)
        ]
