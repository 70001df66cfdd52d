"""Corral as a benchmark subject: adds from this process, a worker in a child process."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.subjects import QUEUE, SEED_CHUNK, Latency, Limits, WorkerSpec, percentile
from engine import Job, Queue
from engine.keys import QueueKeys
from engine.multiplex import MultiplexedConnection

REPO_ROOT = Path(__file__).resolve().parent.parent
CEILING_SCRIPT = "redis.call('INCR', KEYS[1]) return 1"
DRAIN_TIMEOUT = 60.0


def _bulk_items(count: int, options: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [("noop", {}, options) for _ in range(count)]


class CorralSubject:
    """Corral's ``Queue`` in the harness and ``bench.corral_worker`` as its worker."""

    label = "Corral"
    limits = Limits()

    def __init__(self, url: str) -> None:
        self.url = url
        self.queue = Queue(QUEUE, url)
        self.keys = QueueKeys(QUEUE)

    async def add_one_by_one(self, jobs: int) -> float:
        start = time.perf_counter()
        for _ in range(jobs):
            await self.queue.add("noop", {})
        return time.perf_counter() - start

    async def add_bulk(self, jobs: int, chunk: int) -> float:
        start = time.perf_counter()
        for done in range(0, jobs, chunk):
            await self.queue.add_bulk(_bulk_items(min(chunk, jobs - done), {}))
        return time.perf_counter() - start

    async def seed(self, jobs: int, remove_on_complete: bool) -> None:
        options: dict[str, Any] = {"remove_on_complete": True} if remove_on_complete else {}
        for done in range(0, jobs, SEED_CHUNK):
            await self.queue.add_bulk(_bulk_items(min(SEED_CHUNK, jobs - done), options))

    def worker(self, concurrency: int) -> WorkerSpec:
        argv = [sys.executable, "-m", "bench.corral_worker", "--url", self.url]
        argv += ["--queue", QUEUE, "--concurrency", str(concurrency)]
        return WorkerSpec(argv, REPO_ROOT, {})

    async def remaining(self, jobs: int) -> int:
        completed, failed = await self.queue.get_totals()
        return jobs - completed - failed

    async def latency(self, rate: float, seconds: float) -> Latency:
        total = round(rate * seconds)
        adds: list[asyncio.Task[Job]] = []
        start = time.perf_counter()
        for i in range(total):
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            # on schedule, without waiting for the previous add: a steady arrival rate
            adds.append(asyncio.create_task(self.queue.add("noop", {})))
        achieved = total / (time.perf_counter() - start)
        ids = [job.id for job in await asyncio.gather(*adds)]
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while await self.remaining(total) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: jobs still unfinished after {DRAIN_TIMEOUT}s")
            await asyncio.sleep(0.05)
        async with self.queue.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "timestamp", "processed_on")
            replies = await pipe.execute()
        delays = sorted(
            float(int(started) - int(added))
            for added, started in replies
            if added is not None and started is not None
        )
        return Latency(percentile(delays, 0.5), percentile(delays, 0.99), len(delays), achieved)

    async def ceiling(self, tasks: int, pipeline: int, seconds: float) -> float:
        """Trivial script calls over the connection a worker uses for its per-job scripts
        (``engine.multiplex``): concurrent calls share one pipelined connection."""
        client = aioredis.Redis.from_url(self.url)
        wire = MultiplexedConnection.for_client(client)
        assert wire is not None
        try:
            sha = await client.script_load(CEILING_SCRIPT)
            end = time.perf_counter() + seconds
            calls = 0
            call: tuple[str, str, list[str], list[Any]] = (
                sha,
                CEILING_SCRIPT,
                ["bench:ceiling"],
                [],
            )
            batch = [call] * pipeline

            async def loop() -> None:
                nonlocal calls
                while time.perf_counter() < end:
                    if pipeline <= 1:
                        await wire.evalsha(sha, CEILING_SCRIPT, ["bench:ceiling"], [])
                        calls += 1
                        continue
                    await wire.evalsha_many(batch)
                    calls += pipeline

            start = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(tasks)))
            return calls / (time.perf_counter() - start)
        finally:
            await wire.aclose()
            await client.aclose()

    async def close(self) -> None:
        await self.queue.close()
