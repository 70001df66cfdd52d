"""``Queue.get_workers``: live workers from their heartbeats, in-process and as real worker
processes, one of which is SIGKILLed and drops out when its heartbeat expires."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

import pytest
import redis.asyncio as aioredis
from support.workers import WorkerProcess, running_worker, wait_until

from engine import Job, Queue
from engine.keys import QueueKeys


async def test_a_running_worker_is_listed_with_its_heartbeat(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    release = asyncio.Event()

    async def process(job: Job) -> None:
        await release.wait()

    async with Queue(queue_name, redis) as queue:
        assert await queue.get_workers() == []
        await queue.add_bulk([("j", i) for i in range(2)])
        before = int(time.time() * 1000)
        async with running_worker(
            queue_name, process, redis_url, concurrency=3, lock_duration=400
        ) as worker:

            async def two_in_flight() -> bool:
                listed = await queue.get_workers()
                return len(listed) == 1 and listed[0].in_flight == 2

            await wait_until(two_in_flight, within=10)
            (info,) = await queue.get_workers()
            assert info.id == worker.id and info.queue == queue_name
            assert (info.host, info.pid, info.concurrency) == (socket.gethostname(), os.getpid(), 3)
            assert before - 1_000 <= info.started <= info.last_beat
            assert info.expires == info.last_beat + 5_000  # TTL max(2 x lock, 5 s)
            release.set()
        # a clean shutdown removes the record at once
        assert await queue.get_workers() == []


@pytest.mark.timeout(90)
async def test_a_killed_worker_drops_out_when_its_heartbeat_expires(
    redis: aioredis.Redis, queue_name: str, redis_url: str, procs: list[WorkerProcess]
) -> None:
    """Two ``corral worker`` processes: both are listed with their pids; the SIGKILLed one
    drops out within its heartbeat TTL (5 s here) while the other stays; SIGTERM removes the
    other at once."""
    for concurrency in (2, 5):
        procs.append(
            WorkerProcess(
                "support.jobs:ledger_job",
                queue_name,
                redis_url,
                concurrency=concurrency,
                lock_duration=1_000,
            )
        )
    async with Queue(queue_name, redis) as queue:

        async def both_listed() -> bool:
            return len(await queue.get_workers()) == 2

        await wait_until(both_listed, within=30)
        listed = {w.pid: w for w in await queue.get_workers()}
        victim, survivor = procs
        assert set(listed) == {victim.proc.pid, survivor.proc.pid}
        assert listed[victim.proc.pid].concurrency == 2
        assert listed[survivor.proc.pid].concurrency == 5

        victim.kill()
        killed_at = time.monotonic()

        async def victim_gone() -> bool:
            return [w.pid for w in await queue.get_workers()] == [survivor.proc.pid]

        await wait_until(victim_gone, within=15)
        assert time.monotonic() - killed_at <= 5.0 + 2.0  # heartbeat TTL, plus slack
        # its id is still in the zset until pruned, but the record is gone
        victim_id = listed[victim.proc.pid].id
        assert await redis.zscore(QueueKeys(queue_name).workers, victim_id) is not None

        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0
        assert await queue.get_workers() == []
