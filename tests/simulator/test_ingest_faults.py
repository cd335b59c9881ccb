"""perper.Producer on the simulator's faulty store: keyed sends stay exactly-once by key."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import perper
from perper.errors import StoreUnavailableError
from perper.runtime.settings import RuntimeSettings
from simulator.faults import FaultyStore, Scenario
from simulator.world import World

STREAM = "sim/clicks"
app = perper.App("feed")


@app.launcher
async def main(ctx: perper.Context) -> None:
    return None


def faulty_producers(seed: int, *, producers: int = 3, events: int = 40) -> dict[str, Any]:
    """``producers`` producers, each on its own faulty view of one store, send ``events``
    keyed events each (16 sends in flight per producer), resending a failed send with the
    same key until it succeeds, as a client that cannot tell whether the write landed
    must. Returns what the store holds and what the senders were told."""
    scenario = Scenario(
        seed=seed, workers=0, kinds=(), settings=RuntimeSettings(), heal_at=float("inf")
    )
    world = World(app, {}, scenario)
    views = []
    for n in range(producers):
        view = FaultyStore(world, world.store, n, f"p{n}", random.Random(f"{seed}/p{n}"))
        view.latency_rate, view.latency_max = 0.3, 0.01
        view.error_rate = 0.15
        view.timeout_rate = 0.15  # the write lands, then the call fails
        view.refresh()
        views.append(view)
    told: dict[str, int] = {}

    async def producer(n: int) -> None:
        lanes = asyncio.Semaphore(16)
        async with perper.Producer(views[n], STREAM, max_batch=8) as clicks:

            async def send(i: int) -> None:
                key = f"p{n}-{i}"
                async with lanes:
                    for _ in range(200):  # bounded: a fault rate of 0.3 never needs 200
                        try:
                            told[key] = await clicks.send({"producer": n, "i": i}, key=key)
                            return
                        except StoreUnavailableError:
                            continue
                    raise AssertionError(f"send of {key} failed 200 times")

            await asyncio.gather(*(send(i) for i in range(events)))

    async def run() -> list[tuple[int, Any]]:
        await asyncio.gather(*(producer(n) for n in range(producers)))
        return [entry async for entry in world.store.read(STREAM)]

    try:
        stored = world.loop.run_until_complete(run())
    finally:
        world.loop.close()
    keys = [key for _, ks in asyncio.run(world.store.segment_keys(STREAM)) for key in ks]
    return {"stored": stored, "keys": keys, "told": told, "fired": world.fired}


def test_keyed_sends_through_store_errors_and_timeouts_land_exactly_once() -> None:
    result = faulty_producers(seed=3)
    fired = " | ".join(result["fired"])
    assert "append_keyed (timed out after landing)" in fired  # the faults did happen
    assert "store error for worker" in fired
    stored, keys, told = result["stored"], result["keys"], result["told"]
    expected = {f"p{n}-{i}" for n in range(3) for i in range(40)}
    assert len(stored) == len(expected) == 120
    assert len(keys) == len(set(keys)) and set(keys) == expected
    # Every sender was told the seq that holds its event, though its write may have
    # landed in an earlier, failed-looking attempt.
    for key, seq in told.items():
        n, i = key[1:].split("-")
        assert stored[seq] == (seq, {"producer": int(n), "i": int(i)})


def test_the_same_seed_stores_the_same_order_and_another_seed_differs() -> None:
    first, again, other = faulty_producers(5), faulty_producers(5), faulty_producers(6)
    assert first["stored"] == again["stored"] and first["fired"] == again["fired"]
    assert first["stored"] != other["stored"]
