"""Send a generated stream of click events into a run's ingest stream ``{run}/clicks``.

    python examples/clicks_producer.py --run shop --producer 1 --count 100000 [--seal]

Every event has the key ``p{producer}-{i}`` (also its ``event`` field): killing this program and running it again
resends everything from the start, and the stream keeps each event once. Events are a
pure function of (producer, i), so a rerun sends exactly the same ones.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from typing import Any

import perper
from perper.store import default_store_url

PAGES = ["/", "/search", "/product", "/cart", "/checkout", "/help"]


def event(producer: int, i: int, users: int) -> dict[str, Any]:
    """Click ``i`` of ``producer``: a user, a page and an event time (seconds)."""
    rng = random.Random(producer * 1_000_003 + i)  # per event: reruns send the same clicks
    return {
        "event": f"p{producer}-{i}",
        "user": rng.randrange(users),
        "page": rng.choice(PAGES),
        # Mostly in order, with clicks up to a minute late, as from real devices.
        "time": round(i * 0.5 - rng.random() * 60, 3),
        "producer": producer,
    }


async def produce(
    store_url: str,
    run: str,
    producer: int,
    count: int,
    *,
    users: int = 500,
    batch: int = 500,
    senders: int = 4,
    seal: bool = False,
    progress: bool = False,
) -> None:
    """Send ``count`` events of ``producer`` in ``batch``-sized ``send_many`` calls from
    ``senders`` concurrent tasks (group-committed by the producer). With ``progress``,
    print ``sent N`` (events durable so far) after each batch."""
    store = perper.open_store(store_url)
    async with store, perper.Producer(store, f"{run}/clicks") as clicks:
        starts = iter(range(0, count, batch))
        sent = 0

        async def sender() -> None:
            for start in starts:
                stop = min(start + batch, count)
                events = [event(producer, i, users) for i in range(start, stop)]
                await clicks.send_many(events, keys=[e["event"] for e in events])
                if progress:
                    nonlocal sent
                    sent += stop - start
                    print(f"sent {sent}", flush=True)

        await asyncio.gather(*(sender() for _ in range(senders)))
        if seal:
            await clicks.seal()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None, help="store URL (default: $PERPER_STORE)")
    parser.add_argument("--run", required=True, help="the run whose clicks stream to feed")
    parser.add_argument("--producer", type=int, default=1, help="producer number (key prefix)")
    parser.add_argument("--count", type=int, default=10_000, help="events to send")
    parser.add_argument("--users", type=int, default=500, help="distinct users")
    parser.add_argument("--seal", action="store_true", help="seal the stream afterwards")
    parser.add_argument("--progress", action="store_true", help="print 'sent N' per batch")
    args = parser.parse_args()
    url = args.store or default_store_url()
    asyncio.run(
        produce(
            url,
            args.run,
            args.producer,
            args.count,
            users=args.users,
            seal=args.seal,
            progress=args.progress,
        )
    )


if __name__ == "__main__":
    main()
