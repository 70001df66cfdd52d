"""``corral check`` against a real server and workload: failed, waiting, old, stalled jobs and
missing workers are breaches (exit 1, one line each); within thresholds exits 0; a check that
cannot run exits 2."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.workers import WorkerProcess, running_worker, wait_until

from engine import Job, JobState, Queue, UnrecoverableError
from engine.health import Thresholds, breaches, read_health
from engine.keys import QueueKeys

TESTS_DIR = Path(__file__).resolve().parent


async def _fail(job: Job) -> None:
    raise UnrecoverableError("boom")


async def _ok(job: Job) -> None:
    return None


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral", "check", *args],
        cwd=TESTS_DIR,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def check(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``corral check`` in a child process (off the event loop)."""
    return await asyncio.to_thread(_check, *args)


async def _settled(queue: Queue, failed: int) -> None:
    async def done() -> bool:
        return (await queue.get_counts("failed"))["failed"] >= failed

    await wait_until(done, within=20)


@pytest.mark.timeout(90)
async def test_breaches_are_reported_one_line_each_with_exit_1(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        # four final failures, one of them removed at once by retention (counted by its event)
        await queue.add_bulk([("f", {}) for _ in range(3)])
        await queue.add("f", {}, remove_on_fail=True)
        async with running_worker(queue_name, _fail, redis_url) as worker:

            async def four_failed() -> bool:
                return (await queue.get_totals())[1] == 4

            await wait_until(four_failed, within=20)
        assert worker.handed_back == []
        # a worker dies holding a job: the job stays active without a lock (stalled)
        held = await queue.add("slow", {"sleep": 60})
        victim = WorkerProcess("support.jobs:ledger_job", queue_name, redis_url)
        procs.append(victim)

        async def taken() -> bool:
            return await queue.get_job_state(held.id) is JobState.ACTIVE

        await wait_until(taken, within=20)
        victim.kill()
        await queue.add_bulk([("w", {}) for _ in range(5)])
        lock = QueueKeys(queue_name).lock(held.id)

        async def lock_gone() -> bool:
            return not await queue.client.exists(lock)

        await wait_until(lock_gone, within=10)
        await asyncio.sleep(1.2)  # the waiting jobs are over a second old

        result = await check(
            "--redis", redis_url, "--queue", queue_name, "--window", "5",
            "--max-failed", "3", "--max-waiting", "4", "--max-wait-age", "1",
            "--max-stalled", "0",
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"{queue_name}: 4 jobs failed in the last 5 min (limit 3)"
        assert lines[1] == f"{queue_name}: 5 jobs waiting (limit 4)"
        assert re.fullmatch(
            rf"{queue_name}: the oldest waiting job has waited \d+ s \(limit 1 s\)", lines[2]
        )
        assert lines[3] == f"{queue_name}: 1 job stalled (now or in the last 5 min; limit 0)"
        assert len(lines) == 4

        result = await check(
            "--redis", redis_url, "--queue", queue_name, "--window", "5",
            "--max-failed", "4", "--max-waiting", "5", "--max-wait-age", "600",
            "--max-stalled", "1",
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, "ok: 1 queue(s) within thresholds\n")


async def test_queues_without_live_workers_breach_min_workers(
    redis_url: str, redis: aioredis.Redis
) -> None:
    prefix = "chk" + uuid.uuid4().hex[:8]
    async with (
        Queue("served", redis_url, prefix=prefix) as served,
        Queue("orphan", redis_url, prefix=prefix) as orphan,
    ):
        await served.add("j", {})
        await orphan.add("j", {})
        async with running_worker("served", _ok, redis_url, prefix=prefix):

            async def beating() -> bool:
                return bool(await redis.zcard(QueueKeys("served", prefix).workers))

            await wait_until(beating, within=10)
            # no --queue: every queue under the prefix is checked
            result = await check("--redis", redis_url, "--prefix", prefix, "--min-workers", "1")
        assert result.returncode == 1, result.stderr
        assert result.stdout == "orphan: 0 live workers (minimum 1)\n"
        result = await check(
            "--redis", redis_url, "--prefix", prefix, "--queue", "orphan", "--max-waiting", "1"
        )
        assert (result.returncode, result.stdout) == (0, "ok: 1 queue(s) within thresholds\n")


async def test_stalled_events_in_the_window_count_once_per_job(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        held = await queue.add("slow", {"sleep": 60})
        victim = WorkerProcess("support.jobs:ledger_job", queue_name, redis_url)
        procs.append(victim)

        async def taken() -> bool:
            return await queue.get_job_state(held.id) is JobState.ACTIVE

        await wait_until(taken, within=20)
        victim.kill()
        # a new worker recovers the job and runs it (it stalls no more)
        rescuer = WorkerProcess("support.jobs:ledger_job", queue_name, redis_url)
        procs.append(rescuer)

        async def rerun() -> bool:
            job = await queue.get_job(held.id)
            return job is not None and job.stalled_count == 1 and job.state is JobState.ACTIVE

        await wait_until(rerun, within=20)
        health = await read_health(queue.client, queue.keys, 60_000)
        assert (health.stalled, health.failed, health.waiting) == (1, 0, 0)
        assert health.workers >= 1  # the rescuer (and the victim until its heartbeat expires)
        (breach,) = breaches(health, Thresholds(max_stalled=0, min_workers=1))
        assert (breach.what, breach.value, breach.limit) == ("stalled", 1, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_check_that_cannot_run_exits_2(redis_url: str) -> None:
    result = await check("--redis", f"redis://127.0.0.1:{_free_port()}/0", "--max-waiting", "1")
    assert result.returncode == 2
    assert "cannot check: server redis://127.0.0.1:" in result.stderr
    assert "unreachable" in result.stderr
    result = await check("--redis", redis_url, "--queue", "never-used-queue", "--max-waiting", "1")
    assert result.returncode == 2
    assert "queue 'never-used-queue' not found" in result.stderr
    result = await check("--redis", redis_url, "--prefix", "nothing-here", "--max-waiting", "1")
    assert result.returncode == 2
    assert "no queues under prefix 'nothing-here'" in result.stderr
    result = await check("--redis", redis_url)
    assert result.returncode == 2
    assert "give at least one threshold" in result.stderr
    result = await check("--redis", redis_url, "--max-waiting", "-1")
    assert result.returncode == 2  # argparse names the flag
    assert "--max-waiting" in result.stderr
