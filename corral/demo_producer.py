"""The producers of ``corral demo``: a steady stream of emails, bursts of webhooks, reports
with priorities, and delayed thumbnails. Run as ``REDIS_URL=... python -m corral.demo_producer``
(the URL comes from the environment, so a password in it never shows in ``ps``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
from collections.abc import Awaitable, Callable

from engine import Backoff, Queue

Producer = Callable[[Queue], Awaitable[None]]

EMAILS, REPORTS, WEBHOOKS, THUMBNAILS = "emails", "reports", "webhooks", "thumbnails"
WEBHOOKS_DEAD = "webhooks-dead"
"""Where hooks whose endpoint is gone (410) go: a dead-letter queue, replayed from ``D``."""
QUEUES = (EMAILS, REPORTS, WEBHOOKS, THUMBNAILS)
KEEP = {"remove_on_complete": 2000, "remove_on_fail": 5000}


async def steady_emails(queue: Queue) -> None:
    n = 0
    while True:
        n += 1
        to = f"user{n}@example.com" if n % 97 else f"user{n}-at-example.com"
        await queue.add(
            "send", {"to": to, "template": random.choice(["welcome", "receipt", "digest"])},
            attempts=4, backoff=Backoff.exponential(500, jitter=0.3), **KEEP,
        )  # fmt: skip
        await asyncio.sleep(random.uniform(0.02, 0.08))


async def bursty_webhooks(queue: Queue) -> None:
    while True:
        burst = random.randint(50, 300)
        await queue.add_bulk(
            [
                ("deliver", {"url": f"https://hooks.example.com/{i % 7}", "gone": i % 41 == 0},
                 {"attempts": 5, "backoff": Backoff.exponential(1000), **KEEP,
                  **({"dead_letter": WEBHOOKS_DEAD} if i % 41 == 0 else {})})
                for i in range(burst)
            ]
        )  # fmt: skip
        await asyncio.sleep(random.uniform(8, 20))


async def reports(queue: Queue) -> None:
    while True:
        priority = random.choice([1, 2, 2, 3, 3, 3])
        await queue.add(
            "monthly", {"account": random.randint(1, 999), "pages": random.randint(5, 16)},
            priority=priority, attempts=2, **KEEP,
        )  # fmt: skip
        await asyncio.sleep(random.uniform(1.0, 3.0))


async def thumbnails(queue: Queue) -> None:
    while True:
        delay = random.choice([0, 0, 0, 5_000, 15_000, 60_000])
        await queue.add("resize", {"image": random.randint(1, 10**6)}, delay=delay, **KEEP)
        await asyncio.sleep(random.uniform(0.2, 0.6))


async def _forever(producer: Producer, queue: Queue) -> None:
    """Keep a producer going through connection errors (the demo outlives server hiccups)."""
    while True:
        try:
            await producer(queue)
        except Exception as exc:
            print(f"demo producer {producer.__name__}: {exc}; retrying", file=sys.stderr)
            await asyncio.sleep(1)


async def produce(url: str) -> None:
    """Run all producers until cancelled (or the parent process goes away)."""
    parent = os.getppid()
    queues = {name: Queue(name, url) for name in QUEUES}
    plan: list[tuple[Producer, str]] = [
        (steady_emails, EMAILS),
        (bursty_webhooks, WEBHOOKS),
        (reports, REPORTS),
        (thumbnails, THUMBNAILS),
    ]
    tasks = [asyncio.create_task(_forever(producer, queues[name])) for producer, name in plan]
    try:
        # stop when the demo that started us is gone: there is no event for that, so look
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(1)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queue in queues.values():
            await queue.close()


def main() -> int:
    """Produce into the server named by ``REDIS_URL`` until interrupted."""
    url = os.environ.get("REDIS_URL")
    if not url:
        print("corral.demo_producer: set REDIS_URL to the server's URL", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(produce(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
