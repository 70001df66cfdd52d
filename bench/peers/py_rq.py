"""RQ (PyPI ``rq``) in the Corral benchmark, with its default worker (``rq worker``: a work horse
process per job) and no concurrency within one worker process.

Run with the peer's own environment: ``bench/.peers/python/rq/bin/python py_rq.py MODE --url URL
...`` (modes and output as in ``peer_common``). RQ is synchronous: adds are plain calls, bulk
adds are ``Queue.enqueue_many`` (one pipeline per chunk), and "remove on complete" is
``result_ttl=0``. The job function is ``peer_common.noop``, which the work horse imports.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import threading
import time
from typing import Any

from peer_common import (
    DRAIN_TIMEOUT,
    cpu_seconds,
    emit,
    latency_result,
    noop,
    parse_args,
)
from redis import Redis
from rq import Queue, Worker


def _queue(args: Any) -> Queue:
    return Queue(args.queue, connection=Redis.from_url(args.url))


def _enqueue_in_chunks(queue: Queue, jobs: int, chunk: int, result_ttl: int | None) -> None:
    for done in range(0, jobs, chunk):
        batch = [
            Queue.prepare_data(noop, result_ttl=result_ttl) for _ in range(min(chunk, jobs - done))
        ]
        queue.enqueue_many(batch)


def remaining(queue: Queue) -> int:
    """Jobs not finished: queued, moved to the intermediate list by a worker, or started."""
    pipe = queue.connection.pipeline(transaction=False)
    pipe.llen(queue.key)
    pipe.llen(queue.intermediate_queue_key)
    pipe.zcard(queue.started_job_registry.key)
    return sum(int(count) for count in pipe.execute())


def add(args: Any) -> None:
    queue = _queue(args)
    queue.connection.ping()
    start = time.perf_counter()
    for _ in range(args.jobs):
        queue.enqueue(noop)
    emit({"seconds": time.perf_counter() - start, "jobs": args.jobs})


def bulk(args: Any) -> None:
    queue = _queue(args)
    queue.connection.ping()
    start = time.perf_counter()
    _enqueue_in_chunks(queue, args.jobs, args.chunk, None)
    emit({"seconds": time.perf_counter() - start, "jobs": args.jobs})


def seed(args: Any) -> None:
    _enqueue_in_chunks(_queue(args), args.jobs, 1000, 0 if args.remove_on_complete else None)
    emit({"seeded": args.jobs})


def work(args: Any) -> None:
    """The ``bench.child`` protocol: RQ's worker loop runs in the main thread (it handles
    SIGTERM as a warm shutdown there); a thread reads the commands."""
    queue = _queue(args)
    worker = Worker([queue], connection=queue.connection)
    queue.connection.ping()
    emit({"event": "ready"})
    if sys.stdin.readline().strip() != "go":
        return
    cpu_at_go = cpu_seconds()
    cpu_at_stop: list[float] = []

    def wait_for_stop() -> None:
        sys.stdin.readline()  # "stop", or the end of input
        cpu_at_stop.append(cpu_seconds())
        os.kill(os.getpid(), signal.SIGTERM)  # RQ's own warm shutdown

    threading.Thread(target=wait_for_stop, daemon=True).start()
    worker.work(logging_level="WARNING")
    cpu = (cpu_at_stop[0] if cpu_at_stop else cpu_seconds()) - cpu_at_go
    emit({"event": "stopped", "cpu_s": cpu})


def _utc_ms(raw: bytes) -> float:
    stamp = datetime.datetime.fromisoformat(raw.decode().replace("Z", "+00:00"))
    return stamp.timestamp() * 1000


def latency(args: Any) -> None:
    """Enqueue on schedule from this thread (each enqueue is a blocking call), then read each
    job's ``enqueued_at`` and ``started_at`` (both set by the clients' clocks, in µs)."""
    queue = _queue(args)
    total = round(args.rate * args.seconds)
    ids = []
    start = time.perf_counter()
    for i in range(total):
        wait = start + i / args.rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        ids.append(queue.enqueue(noop).id)
    achieved = total / (time.perf_counter() - start)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while remaining(queue) > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs still unfinished after {DRAIN_TIMEOUT}s")
        time.sleep(0.05)
    pipe = queue.connection.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"rq:job:{job_id}", "enqueued_at", "started_at")
    delays = [
        _utc_ms(started) - _utc_ms(enqueued)
        for enqueued, started in pipe.execute()
        if enqueued and started
    ]
    emit(latency_result(delays, total, achieved))


MODES = {"add": add, "bulk": bulk, "seed": seed, "work": work, "latency": latency}

if __name__ == "__main__":
    arguments = parse_args()
    MODES[arguments.mode](arguments)
