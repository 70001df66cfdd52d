"""A worker of low concurrency with short jobs: it holds a few jobs beyond the one it runs
(prefetch), records their completions together (group commit), and gives the held ones back
when it closes. Long jobs are never held."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from support.workers import running_worker, wait_until

from engine import Job, Queue, Worker
from engine.prefetch import PREFETCH

JOBS = 600


def _script_calls(stats: dict[str, Any]) -> int:
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


async def test_short_jobs_at_concurrency_1_are_recorded_several_per_call(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """Every job completes exactly once, in far fewer script calls than jobs."""
    ran: list[str] = []

    async def process(job: Job) -> Any:
        ran.append(job.id)
        return None

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("n", i) for i in range(JOBS)])
        before = _script_calls(await redis.info("commandstats"))
        async with running_worker(queue_name, process, redis_url, concurrency=1):

            async def all_done() -> bool:
                return (await queue.get_totals())[0] >= JOBS

            await wait_until(all_done, within=30)
        calls = _script_calls(await redis.info("commandstats")) - before
        assert sorted(ran, key=int) == [str(i) for i in range(1, JOBS + 1)]  # each once
        assert await queue.get_counts("completed", "active", "wait") == {
            "completed": JOBS,
            "active": 0,
            "wait": 0,
        }
        # one call per job would be >= JOBS; the worker's other scripts (stalled checks, lock
        # renewals) are a handful
        assert calls < JOBS * 0.6, calls


async def test_held_jobs_go_back_to_wait_when_the_worker_closes(
    redis_url: str, queue_name: str
) -> None:
    """While one job runs, the worker holds up to PREFETCH more, active and locked; closing it
    puts the held ones back unrun, and nothing is lost."""
    started = asyncio.Event()
    release = asyncio.Event()
    ran: list[str] = []

    async def process(job: Job) -> Any:
        ran.append(job.id)
        if len(ran) == 100:  # after enough short jobs the worker prefetches
            started.set()
            await release.wait()
        return None

    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("n", i) for i in range(300)])
        worker = Worker(queue_name, process, redis_url, concurrency=1, block_timeout=0.5)
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(started.wait(), 30)

        async def holding() -> bool:
            return (await queue.get_counts("active"))["active"] == 1 + PREFETCH

        await wait_until(holding, within=10)
        closing = asyncio.create_task(worker.close())
        await asyncio.sleep(0.2)
        release.set()
        await asyncio.wait_for(closing, 30)
        await asyncio.wait_for(task, 30)
        counts = await queue.get_counts("completed", "active", "wait")
        assert counts["active"] == 0
        assert counts["completed"] == len(ran) == len(set(ran))
        assert counts["completed"] + counts["wait"] == 300


async def test_long_jobs_are_not_held(redis_url: str, queue_name: str) -> None:
    """Jobs of 20 ms: a concurrency-1 worker has only the running one active."""
    seen_active: list[int] = []

    async with Queue(queue_name, redis_url) as queue:

        async def process(job: Job) -> Any:
            await asyncio.sleep(0.02)
            seen_active.append((await queue.get_counts("active"))["active"])
            return None

        await queue.add_bulk([("n", i) for i in range(30)])
        async with running_worker(queue_name, process, redis_url, concurrency=1):

            async def all_done() -> bool:
                return (await queue.get_totals())[0] >= 30

            await wait_until(all_done, within=30)
    # the first job is run before its length is known; after it, nothing is held
    assert max(seen_active[1:]) == 1, seen_active
