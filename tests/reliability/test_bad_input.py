"""Bad options and corrupt jobs (B4, B6): a worker refuses bad options at construction with
the option and the allowed range named; a job hash of the wrong shape, written straight into
Redis, is failed as corrupt instead of crashing or looping, and the worker goes on."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.workers import running_worker, wait_until

from engine import InvalidJobOptions, Job, JobState, Queue, Worker
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)


async def _noop(job: Job) -> Any:
    return "ok"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("concurrency", 0),
        ("concurrency", -3),
        ("concurrency", float("nan")),
        ("concurrency", 2.5),
        ("concurrency", "4"),
        ("stalled_interval", 0),
        ("max_stalled_count", -1),
        ("lock_duration", 0),
        ("lock_duration", 99),
        ("block_timeout", 0),
        ("shutdown_grace", -1),
    ],
)
def test_b6_bad_worker_options_are_refused_by_name(
    redis_url: str, queue_name: str, option: str, value: object
) -> None:
    with pytest.raises(InvalidJobOptions, match=f"{option}=.*expected"):
        Worker(queue_name, _noop, redis_url, **{option: value})  # type: ignore[arg-type]


CORRUPT: dict[str, dict[bytes, bytes]] = {
    "invalid-json": {b"name": b"x", b"data": b"{not json", b"opts": b"{}", b"timestamp": b"1"},
    "missing-fields": {b"data": b"{}"},
    "opts-not-an-object": {b"name": b"x", b"data": b"{}", b"opts": b"[1, 2]", b"timestamp": b"1"},
    "timestamp-not-a-number": {
        b"name": b"x", b"data": b"{}", b"opts": b"{}", b"timestamp": b"soon",
    },
    "attempts-not-a-number": {
        b"name": b"x", b"data": b"{}", b"opts": b"{}", b"timestamp": b"1", b"attempts": b"many",
    },
    "non-utf8-data": {b"name": b"x", b"data": b'"\xff\xfe"', b"opts": b"{}", b"timestamp": b"1"},
    "non-utf8-name": {b"name": b"\xc3\x28", b"data": b"{}", b"opts": b"{}", b"timestamp": b"1"},
}  # fmt: skip


@pytest.mark.parametrize("shape", sorted(CORRUPT))
async def test_b4_corrupt_job_shapes_fail_as_corrupt(
    redis_url: str, queue_name: str, shape: str
) -> None:
    keys = QueueKeys(queue_name)
    raw = aioredis.Redis.from_url(redis_url)  # bytes in, bytes out
    try:
        async with Queue(queue_name, redis_url) as queue:
            await queue.add("first", {})
            await raw.hset(keys.job("bad"), mapping=CORRUPT[shape])  # type: ignore[arg-type]
            await raw.lpush(keys.wait, "bad")
            after = await queue.add("after", {})
            async with running_worker(queue_name, _noop, redis_url) as worker:

                async def settled() -> bool:
                    done, failed = await queue.get_totals()
                    return done + failed >= 3

                await wait_until(settled, within=20)
                assert worker.running
            assert await queue.get_job_state("bad") is JobState.FAILED
            reason: Any = await raw.hget(keys.job("bad"), "failed_reason")
            assert isinstance(reason, bytes) and reason.startswith(b"corrupt job data"), reason
            done = await queue.get_job(after.id)
            assert done is not None and done.state is JobState.COMPLETED
            assert await queue.get_totals() == (2, 1)
            if shape != "missing-fields":  # that hash stays incomplete, as it was written
                await assert_invariants(queue.client, queue_name, completed=2, failed=1)
    finally:
        await raw.aclose()
