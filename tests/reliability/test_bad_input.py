"""Bad options and corrupt jobs (B4, B6): a worker refuses bad options at construction with
the option and the allowed range named; a job hash of the wrong shape (10 MB included),
written straight into Redis, is failed as corrupt instead of crashing or looping, the worker
goes on, and the dashboard backend reads it back flagged."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.streams import stream_events
from support.workers import running_worker, wait_until

from dashboard.corral_backend import CorralBackend
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


TEN_MB = 10 * 1024 * 1024
REASON_LIMIT = 4096
"""A failed reason longer than this would mean the corrupt field was copied into it."""

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
    # a 10 MB JSON document cut short, as a torn write by another client would leave it: far
    # over any payload limit, and unreadable
    "ten-mb-field": {
        b"name": b"x", b"data": b'{"blob": "' + b"x" * TEN_MB, b"opts": b"{}", b"timestamp": b"1",
    },
}  # fmt: skip


def _dashboard_client(url: str) -> aioredis.Redis:
    """A client set up as the dashboard's (decoded, invalid UTF-8 escaped, socket timeout)."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url, decode_responses=True, encoding_errors="backslashreplace", socket_timeout=5.0
    )
    return client


@pytest.mark.parametrize("shape", sorted(CORRUPT))
async def test_b4_corrupt_job_shapes_fail_as_corrupt(
    redis_url: str, queue_name: str, shape: str
) -> None:
    """B4: a job hash of each corrupt shape, written straight into Redis between two good
    jobs: the worker fails it with "corrupt job data" (a short reason, never the field
    copied in), runs the next job and keeps running; the dashboard backend reads its detail
    (flagged malformed, or its bytes escaped; the failed reason shown) and lists it, without
    raising."""
    keys = QueueKeys(queue_name)
    raw = aioredis.Redis.from_url(redis_url)  # bytes in, bytes out
    dashboard = _dashboard_client(redis_url)
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
            assert len(reason) < REASON_LIMIT
            failed_events = await stream_events(queue.client, queue_name, "failed")
            assert [e["job_id"] for e in failed_events] == ["bad"]
            assert all(len(v) < REASON_LIMIT for v in failed_events[0].values())
            done = await queue.get_job(after.id)
            assert done is not None and done.state is JobState.COMPLETED
            assert await queue.get_totals() == (2, 1)
            if shape != "missing-fields":  # that hash stays incomplete, as it was written
                await assert_invariants(queue.client, queue_name, completed=2, failed=1)

            backend = CorralBackend()
            detail = await backend.read_job(dashboard, queue_name, "bad")
            assert detail is not None and detail.state == "failed"
            if shape == "non-utf8-name":
                # the dashboard's client escapes bytes that are not UTF-8, so this name reads
                # as text: shown escaped, not flagged (the failed reason says why)
                assert detail.name == "\\xc3("
            else:
                assert detail.malformed and detail.malformed_reason
            assert dict(detail.raw)["failed_reason"].startswith("corrupt job data")
            page = await backend.read_page(dashboard, queue_name, "failed", 0, 10)
            assert [row.id for row in page.rows] == ["bad"]
            assert page.rows[0].failed_reason is not None
            good = await backend.read_job(dashboard, queue_name, after.id)
            assert good is not None and not good.malformed and good.state == "completed"
    finally:
        await raw.aclose()
        await dashboard.aclose()
