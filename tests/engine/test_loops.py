"""``engine.loops``: the loop ``corral worker`` runs on, and the engine on uvloop."""

from __future__ import annotations

import asyncio
import signal

import pytest
from support.workers import WorkerProcess, wait_until

from engine import Job, Queue, Worker, loops


def test_asyncio_is_the_default_and_uvloop_on_request() -> None:
    async def kind() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(kind()).startswith("asyncio")
    assert loops.run(kind(), "uvloop").startswith("uvloop")
    with pytest.raises(ValueError, match="loop='trio' is invalid"):
        loops.run(kind(), "trio")


def test_queue_and_worker_run_on_uvloop(redis_url: str, queue_name: str) -> None:
    """The whole hot path (pipelined connection, group commit) on uvloop's transports."""

    async def double(job: Job) -> int:
        return int(job.data) * 2

    async def main() -> list[object]:
        async with Queue(queue_name, redis_url) as queue:
            await queue.add_bulk([("n", i) for i in range(300)])
            added = await queue.add("n", 1000)
            worker = Worker(queue_name, double, redis_url, concurrency=20)
            running = asyncio.create_task(worker.run())
            for _ in range(400):
                if (await queue.get_counts("completed"))["completed"] == 301:
                    break
                await asyncio.sleep(0.05)
            await worker.close()
            await running
            done = await queue.get_job(added.id)
            assert done is not None
            return [done.returnvalue, (await queue.get_counts("completed"))["completed"]]

    assert loops.run(main(), "uvloop") == [2000, 301]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_corral_worker_runs_jobs_on_either_loop(
    redis_url: str, queue_name: str, loop: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("j", {}) for _ in range(50)])
        process = WorkerProcess(
            "support.jobs:noop", queue_name, redis_url, concurrency=5, extra_args=("--loop", loop)
        )
        try:

            async def done() -> bool:
                return (await queue.get_counts("completed"))["completed"] == 50

            await wait_until(done, within=30)
            process.signal(signal.SIGTERM)
            assert process.wait() == 0
        finally:
            process.stop()
