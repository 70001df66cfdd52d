"""arq (PyPI ``arq``) in the Corral benchmark.

Run with the peer's own environment: ``bench/.peers/python/arq/bin/python py_arq.py MODE --url
URL ...`` (modes and output as in ``peer_common``; arq has no bulk add, so no ``bulk``).

arq's worker polls its queue (a sorted set) every ``poll_delay`` seconds, 0.5 by default, and at
concurrency 1 it takes one job per poll: 2 jobs/s. The harness runs it with ``POLL_DELAY``
instead and says so. "Remove on complete" is a function registered with ``keep_result=0``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker, func
from peer_common import (
    emit,
    latency_result,
    paced_adds,
    parse_args,
    serve_async_worker,
    wait_until_done,
)

POLL_DELAY = 0.01
SEED_TASKS = 50


async def _noop(ctx: dict[str, Any]) -> None:
    return None


def _queue_name(args: Any) -> str:
    return f"arq:queue:{args.queue}"


async def _pool(args: Any) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(args.url), default_queue_name=_queue_name(args))


async def add(args: Any) -> None:
    pool = await _pool(args)
    start = time.perf_counter()
    for _ in range(args.jobs):
        await pool.enqueue_job("noop")
    seconds = time.perf_counter() - start
    await pool.aclose()
    emit({"seconds": seconds, "jobs": args.jobs})


async def seed(args: Any) -> None:
    """Untimed: ``SEED_TASKS`` concurrent enqueuers (arq has no bulk add)."""
    pool = await _pool(args)
    name = "noop_remove" if args.remove_on_complete else "noop"
    left = [args.jobs]

    async def enqueuer() -> None:
        while left[0] > 0:
            left[0] -= 1
            await pool.enqueue_job(name)

    await asyncio.gather(*(enqueuer() for _ in range(SEED_TASKS)))
    await pool.aclose()
    emit({"seeded": args.jobs})


async def work(args: Any) -> None:
    worker = Worker(
        functions=[func(_noop, name="noop"), func(_noop, name="noop_remove", keep_result=0)],
        queue_name=_queue_name(args),
        redis_pool=await _pool(args),
        max_jobs=args.concurrency,
        poll_delay=POLL_DELAY,
        handle_signals=False,
    )
    running: list[asyncio.Task[None]] = []

    async def stop() -> None:
        await worker.close()  # cancels the polling loop once running jobs are done
        if running:
            await asyncio.gather(running[0], return_exceptions=True)

    await serve_async_worker(lambda: running.append(asyncio.create_task(worker.async_run())), stop)


async def latency(args: Any) -> None:
    pool = await _pool(args)
    total = round(args.rate * args.seconds)
    jobs, achieved = await paced_adds(total, args.rate, lambda: pool.enqueue_job("noop"))

    async def remaining() -> int:
        return int(await pool.zcard(_queue_name(args)))

    await wait_until_done(remaining)
    results = await asyncio.gather(
        *(Job(job.job_id, pool, _queue_name=_queue_name(args)).result_info() for job in jobs)
    )
    delays = [
        (result.start_time - result.enqueue_time).total_seconds() * 1000
        for result in results
        if result is not None
    ]
    await pool.aclose()
    emit(latency_result(delays, total, achieved))


MODES = {"add": add, "seed": seed, "work": work, "latency": latency}

if __name__ == "__main__":
    arguments = parse_args()
    asyncio.run(MODES[arguments.mode](arguments))
