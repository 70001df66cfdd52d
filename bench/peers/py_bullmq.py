"""The official Python port of BullMQ (PyPI ``bullmq``) in the Corral benchmark.

Run with the peer's own environment: ``bench/.peers/python/bullmq/bin/python py_bullmq.py MODE
--url URL ...`` (modes and output as in ``peer_common``). It writes the same ``bull:`` keys as
Node BullMQ, so the harness reads its progress the same way.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from bullmq import Queue, Worker
from peer_common import (
    emit,
    latency_result,
    paced_adds,
    parse_args,
    serve_async_worker,
    wait_until_done,
)


async def _noop(job: Any, token: str) -> None:
    return None


async def _add_in_chunks(queue: Any, jobs: int, chunk: int, opts: dict[str, Any]) -> None:
    for done in range(0, jobs, chunk):
        batch = [{"name": "noop", "data": {}, "opts": opts} for _ in range(min(chunk, jobs - done))]
        await queue.addBulk(batch)


async def add(args: Any) -> None:
    queue = Queue(args.queue, {"connection": args.url})
    await queue.client.ping()
    start = time.perf_counter()
    for _ in range(args.jobs):
        await queue.add("noop", {})
    seconds = time.perf_counter() - start
    await queue.close()
    emit({"seconds": seconds, "jobs": args.jobs})


async def bulk(args: Any) -> None:
    queue = Queue(args.queue, {"connection": args.url})
    await queue.client.ping()
    start = time.perf_counter()
    await _add_in_chunks(queue, args.jobs, args.chunk, {})
    seconds = time.perf_counter() - start
    await queue.close()
    emit({"seconds": seconds, "jobs": args.jobs})


async def seed(args: Any) -> None:
    queue = Queue(args.queue, {"connection": args.url})
    opts = {"removeOnComplete": True} if args.remove_on_complete else {}
    await _add_in_chunks(queue, args.jobs, 1000, opts)
    await queue.close()
    emit({"seeded": args.jobs})


async def work(args: Any) -> None:
    worker = Worker(
        args.queue,
        _noop,
        {"connection": args.url, "concurrency": args.concurrency, "autorun": False},
    )
    await worker.client.ping()  # connect before the clock starts
    running: list[asyncio.Task[Any]] = []

    async def stop() -> None:
        await worker.close()
        if running:
            await running[0]

    await serve_async_worker(lambda: running.append(asyncio.create_task(worker.run())), stop)


async def latency(args: Any) -> None:
    queue = Queue(args.queue, {"connection": args.url})
    reader = aioredis.Redis.from_url(args.url, decode_responses=True)
    total = round(args.rate * args.seconds)
    jobs, achieved = await paced_adds(total, args.rate, lambda: queue.add("noop", {}))

    async def remaining() -> int:
        async with reader.pipeline(transaction=False) as pipe:
            pipe.llen(f"bull:{args.queue}:wait")
            pipe.llen(f"bull:{args.queue}:active")
            waiting, active = await pipe.execute()
        return int(waiting) + int(active)

    await wait_until_done(remaining)
    async with reader.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.hmget(f"bull:{args.queue}:{job.id}", "timestamp", "processedOn")
        replies = await pipe.execute()
    delays = [float(int(started) - int(added)) for added, started in replies if added and started]
    await reader.aclose()
    await queue.close()
    emit(latency_result(delays, total, achieved))


MODES = {"add": add, "bulk": bulk, "seed": seed, "work": work, "latency": latency}

if __name__ == "__main__":
    arguments = parse_args()
    asyncio.run(MODES[arguments.mode](arguments))
