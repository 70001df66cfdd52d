"""Workers and producers ride out a server that dies and comes back (C5 liveness)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from support.invariants import assert_invariants
from support.server import FaultServer
from support.workers import running_worker, wait_until

from engine import Job, JobState, Queue


@pytest.mark.timeout(60)
async def test_worker_resumes_after_the_server_is_killed_and_restarted(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = fresh_server.url
    done: list[str] = []

    async def process(job: Job) -> Any:
        done.append(job.id)

    caplog.set_level(logging.INFO, logger="corral.worker")
    async with running_worker(queue_name, process, url, stalled_interval=200):
        async with Queue(queue_name, url) as queue:
            first = await queue.add("before", {}, job_id="before-restart")

            async def first_completed() -> bool:
                return await queue.get_job_state(first.id) is JobState.COMPLETED

            await wait_until(first_completed)  # the worker is idle, blocked on the marker
        fresh_server.kill()
        await asyncio.sleep(3.0)  # the worker keeps trying, quietly, with backoff
        fresh_server.restart()
        async with Queue(queue_name, url) as queue:
            after = await queue.add("after", {}, job_id="after-restart")
            await wait_until(lambda: _has(done, after.id), within=25)
            assert await queue.get_job_state(after.id) is JobState.COMPLETED
            await assert_invariants(queue.client, queue_name, completed=1)
    lost = [r for r in caplog.records if "lost Redis" in r.getMessage()]
    back = [r for r in caplog.records if "is back" in r.getMessage()]
    # one line per change of state (lost, back), never one per retry during the outage
    assert 1 <= len(lost) <= 2
    assert len(back) == len(lost)


async def test_scripts_are_reloaded_after_script_flush(redis_url: str, queue_name: str) -> None:
    """R7: after SCRIPT FLUSH the next call reloads its script without an error."""
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("a", {})
        await queue.client.script_flush()
        job = await queue.add("b", {})
        assert job.state is JobState.WAIT
        assert await queue.pause() is True
        await assert_invariants(queue.client, queue_name, paused=2)


async def _has(done: list[str], job_id: str) -> bool:
    return job_id in done
