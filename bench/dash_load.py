"""Engine traffic for the dashboard scenarios, from a child process so it never shares the
harness's event loop: ``python -m bench.dash_load MODE --url URL --queue Q ...``.

- ``produce --rate R``: speaks the ``bench.child`` protocol (``ready``; ``go``; ``stop`` ->
  ``stopped``) and, between ``go`` and ``stop``, adds no-op jobs (removed on completion) at a
  steady R per second with ``Queue.add_bulk``, catching up in batches when it falls behind.
- ``seed --jobs N``: adds N waiting no-op jobs as fast as ``Queue.add_bulk`` goes, then prints
  ``{"seeded": N}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from engine import Queue

TICK = 0.01
MAX_BATCH = 500
SEED_CHUNK = 2_000


def _emit(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _items(count: int, options: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [("noop", {}, options) for _ in range(count)]


async def produce(queue: Queue, rate: float, stopping: asyncio.Event) -> int:
    """Add at ``rate`` per second until ``stopping`` is set; return how many were added."""
    options: dict[str, Any] = {"remove_on_complete": True}
    start = time.perf_counter()
    added = 0
    while not stopping.is_set():
        due = int((time.perf_counter() - start) * rate) - added
        if due <= 0:
            await asyncio.sleep(TICK)
            continue
        batch = min(due, MAX_BATCH)
        await queue.add_bulk(_items(batch, options))
        added += batch
    return added


async def serve_producer(url: str, queue_name: str, rate: float) -> None:
    """The ``bench.child`` protocol around ``produce``."""
    async with Queue(queue_name, url) as queue:
        await queue.client.ping()
        _emit({"event": "ready"})
        stopping = asyncio.Event()
        running: asyncio.Task[int] | None = None
        cpu_at_go = 0.0
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.strip()
            if command == "go" and running is None:
                cpu_at_go = time.process_time()
                running = asyncio.create_task(produce(queue, rate, stopping))
            elif command == "stop" or not line:
                cpu = time.process_time() - cpu_at_go
                stopping.set()
                added = await running if running is not None else 0
                _emit({"event": "stopped", "cpu_s": cpu, "added": added})
                return


async def seed(url: str, queue_name: str, jobs: int) -> None:
    """Add ``jobs`` waiting jobs in bulk calls of ``SEED_CHUNK``."""
    async with Queue(queue_name, url) as queue:
        for done in range(0, jobs, SEED_CHUNK):
            await queue.add_bulk(_items(min(SEED_CHUNK, jobs - done), {}))
    _emit({"seeded": jobs})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run the mode."""
    parser = argparse.ArgumentParser(prog="python -m bench.dash_load")
    parser.add_argument("mode", choices=("produce", "seed"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--jobs", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "produce":
        asyncio.run(serve_producer(args.url, args.queue, args.rate))
    else:
        asyncio.run(seed(args.url, args.queue, args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
