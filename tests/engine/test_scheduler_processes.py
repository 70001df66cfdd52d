"""One job per scheduler tick with three real worker processes and two producers upserting the
same scheduler at the same time (an ``every`` scheduler from two producers in this process, and
a cron one with seconds from two producer processes), checked against the execution ledger
kept outside Redis."""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.ledger import read_ledger
from support.streams import stream_events
from support.workers import TESTS_DIR, WorkerProcess, wait_until

from engine import Queue

LEDGER_JOB = "support.jobs:ledger_job"
EVERY = 200


async def produce(url: str, queue_name: str, rounds: int) -> None:
    """A producer that upserts the same scheduler again and again, as apps do at start."""
    async with Queue(queue_name, url) as queue:
        for _ in range(rounds):
            await queue.upsert_job_scheduler(
                "sync", every=EVERY, job_name="sync", job_data={"sleep": 0.05}
            )
            await asyncio.sleep(random.uniform(0, 0.15))


@pytest.mark.timeout(120)
async def test_one_job_per_tick_with_three_workers_and_two_producers(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    for _ in range(3):
        procs.append(WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=2))
    async with Queue(queue_name, redis_url) as queue:
        await asyncio.gather(*(produce(redis_url, queue_name, 20) for _ in range(2)))

        async def twelve_ticks() -> bool:
            found = await queue.get_job_scheduler("sync")
            return found is not None and found.iterations >= 12

        await wait_until(twelve_ticks, within=60)
        assert await queue.remove_job_scheduler("sync") is True

        async def idle() -> bool:
            counts = await queue.get_counts("wait", "active", "delayed")
            return sum(counts.values()) == 0

        await wait_until(idle, within=30)
        completed = set(await queue.get_job_ids("completed", 0, -1))

    added = [e["job_id"] for e in await stream_events(redis, queue_name, "added")]
    removed = {e["job_id"] for e in await stream_events(redis, queue_name, "removed")}
    assert len(added) == len(set(added)), "a tick got two jobs"
    assert all(job_id.startswith("repeat-sync-") for job_id in added)
    ticks = sorted(int(job_id.rsplit("-", 1)[1]) for job_id in added)
    assert all((t - ticks[0]) % EVERY == 0 for t in ticks)
    assert len(removed) <= 1  # at most the waiting job, removed with the scheduler
    assert completed == set(added) - removed

    starts = Counter(str(line["job_id"]) for line in read_ledger(ledger) if line["kind"] == "start")
    assert set(starts) == completed
    assert set(starts.values()) == {1}, "a tick's job ran twice"


@pytest.mark.timeout(60)
async def test_one_job_per_cron_tick_with_three_worker_and_two_producer_processes(
    redis_url: str,
    queue_name: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    procs: list[WorkerProcess],
) -> None:
    """A cron pattern with seconds (every second), upserted again and again by two producer
    processes while three worker processes take its jobs: each tick gets exactly one job, on
    a whole second, and each job runs once."""
    ledger, ticks_wanted = tmp_path / "ledger.jsonl", 6
    for _ in range(3):
        procs.append(WorkerProcess(LEDGER_JOB, queue_name, redis_url, ledger=ledger, concurrency=2))
    producers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "support.scheduler_producer",
            redis_url, queue_name, "tick", "25", "* * * * * *",
            cwd=TESTS_DIR,
        )
        for _ in range(2)
    ]  # fmt: skip
    async with Queue(queue_name, redis_url) as queue:

        async def enough_ticks() -> bool:
            found = await queue.get_job_scheduler("tick")
            return found is not None and found.iterations >= ticks_wanted

        await wait_until(enough_ticks, within=30)  # the first ticks come while they upsert
        assert [await p.wait() for p in producers] == [0, 0]
        scheduler = await queue.get_job_scheduler("tick")
        assert scheduler is not None and scheduler.pattern == "* * * * * *"
        assert await queue.remove_job_scheduler("tick") is True

        async def idle() -> bool:
            counts = await queue.get_counts("wait", "active", "delayed")
            return sum(counts.values()) == 0

        await wait_until(idle, within=15)
        completed = set(await queue.get_job_ids("completed", 0, -1))

    added = [e["job_id"] for e in await stream_events(redis, queue_name, "added")]
    removed = {e["job_id"] for e in await stream_events(redis, queue_name, "removed")}
    assert len(added) == len(set(added)), "a tick got two jobs"
    assert all(job_id.startswith("repeat-tick-") for job_id in added)
    ticks = [int(job_id.rsplit("-", 1)[1]) for job_id in added]
    assert ticks == sorted(ticks) and len(ticks) >= ticks_wanted
    assert all(t % 1000 == 0 for t in ticks), "a cron tick falls on a whole second"
    assert len(removed) <= 1  # at most the waiting job, removed with the scheduler
    assert completed == set(added) - removed

    starts = Counter(str(line["job_id"]) for line in read_ledger(ledger) if line["kind"] == "start")
    assert set(starts) == completed
    assert set(starts.values()) == {1}, "a tick's job ran twice"
