"""R5: a server that may evict keys is refused, by the producer and by the worker, at start and
on every reconnect of a running worker, for each evicting ``maxmemory-policy``; ``corral
worker`` refuses it unless ``--allow-unsafe-eviction``."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import pytest
from support.server import FaultServer
from support.workers import WorkerProcess, wait_until

from engine import Job, Queue, Worker
from engine.errors import UnsafeServerConfig

pytestmark = pytest.mark.timeout(60)

POLICIES = ["allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl", "allkeys-random"]


async def _noop(job: Job) -> Any:
    return job.data


@pytest.mark.parametrize("policy", POLICIES)
async def test_r5_producer_and_worker_refuse_an_evicting_server_at_start(
    fresh_server: FaultServer, queue_name: str, policy: str
) -> None:
    """The first add and a worker's start both fail with the policy named and the fix; nothing
    is written."""
    fresh_server.config_set("maxmemory-policy", policy)
    async with Queue(queue_name, fresh_server.url) as queue:
        with pytest.raises(UnsafeServerConfig, match=f"'{policy}'.*noeviction"):
            await queue.add("j", {})
        worker = Worker(queue_name, _noop, fresh_server.url, block_timeout=0.5)
        with pytest.raises(UnsafeServerConfig, match=f"'{policy}'"):
            await asyncio.wait_for(worker.run(), 20)
        assert await queue.client.dbsize() == 0


@pytest.mark.parametrize("policy", POLICIES)
async def test_r5_running_worker_rechecks_the_policy_on_reconnect(
    fresh_server: FaultServer, queue_name: str, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The policy turns unsafe while a worker runs and its connections drop: once reconnected
    the worker takes no job and says why, once; when the policy is safe again it goes on."""
    caplog.set_level(logging.INFO, logger="corral.worker")
    url = fresh_server.url
    worker = Worker(queue_name, _noop, url, block_timeout=0.5, stalled_interval=200)
    task = asyncio.create_task(worker.run())
    try:
        async with Queue(queue_name, url, allow_unsafe_eviction=True) as queue:
            await queue.add("before", {})
            await wait_until(lambda: _completed(queue, 1), within=20)
            fresh_server.config_set("maxmemory-policy", policy)
            fresh_server.drop_clients()
            await queue.add("while-unsafe", {})
            await wait_until(lambda: _logged(caplog, "not taking jobs"), within=20)
            await asyncio.sleep(1.5)
            assert (await queue.get_totals())[0] == 1  # refused: the job waits
            assert await queue.get_counts("wait") == {"wait": 1}
            fresh_server.config_set("maxmemory-policy", "noeviction")
            await wait_until(lambda: _completed(queue, 2), within=20)
    finally:
        await worker.close()
        await asyncio.wait_for(task, 30)
    refusals = [r.getMessage() for r in caplog.records if "not taking jobs" in r.getMessage()]
    assert len(refusals) == 1 and f"'{policy}'" in refusals[0], refusals
    assert any("safe again" in r.getMessage() for r in caplog.records)


async def test_r5_running_producer_refuses_after_a_reconnect_until_the_policy_is_safe(
    fresh_server: FaultServer, queue_name: str
) -> None:
    """A producer whose connections drop while the policy turned unsafe refuses every add from
    then on (not only the first), and adds again once the policy is safe."""
    async with Queue(queue_name, fresh_server.url) as queue:
        await queue.add("before", {})
        fresh_server.config_set("maxmemory-policy", "allkeys-lru")
        fresh_server.drop_clients()
        refused = 0
        for _ in range(3):
            try:
                await queue.add("while-unsafe", {})
            except UnsafeServerConfig:
                refused += 1
        # at most the add that found the dead connection gets through; the rest are refused
        assert refused >= 2
        assert await queue.get_counts("wait") == {"wait": 4 - refused}
        fresh_server.config_set("maxmemory-policy", "noeviction")
        await queue.add("safe-again", {})
        assert await queue.get_counts("wait") == {"wait": 5 - refused}


async def test_r5_corral_worker_refuses_unless_allow_unsafe_eviction(
    fresh_server: FaultServer, queue_name: str
) -> None:
    """A real ``corral worker`` exits 2 naming the policy and the flag; with
    ``--allow-unsafe-eviction`` it runs the queue's jobs on the same server."""
    fresh_server.config_set("maxmemory-policy", "allkeys-lru")
    async with Queue(queue_name, fresh_server.url, allow_unsafe_eviction=True) as queue:
        await queue.add("j", {"n": 1})
        refused = WorkerProcess("support.jobs:noop", queue_name, fresh_server.url)
        try:
            assert refused.wait(30) == 2
            said = refused.output()
        finally:
            refused.stop()
        assert "'allkeys-lru'" in said and "--allow-unsafe-eviction" in said, said
        assert await queue.get_counts("wait") == {"wait": 1}
        allowed = WorkerProcess(
            "support.jobs:noop",
            queue_name,
            fresh_server.url,
            extra_args=["--allow-unsafe-eviction"],
        )
        try:
            await queue.add("j", {"n": 2})
            await wait_until(lambda: _completed(queue, 2), within=20)
            allowed.signal(signal.SIGTERM)
            assert allowed.wait(20) == 0
            assert "--allow-unsafe-eviction" in allowed.output()  # the risk is logged
        finally:
            allowed.stop()


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_totals())[0] >= n
