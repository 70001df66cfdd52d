"""Changing jobs after they were added: change_priority, update_data (from outside and from a
processor), extend_lock and move_to_delayed from a processor, and the SyncQueue doors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import (
    DelayedError,
    InvalidJobData,
    InvalidJobOptions,
    Job,
    JobNotFound,
    JobState,
    LockLost,
    PayloadTooLarge,
    Queue,
    SyncQueue,
    commands,
)
from engine.commands import Lease
from engine.keys import QueueKeys
from engine.scripts import ScriptRegistry


@pytest.fixture
async def queue(queue_name: str, redis: aioredis.Redis) -> Any:
    async with Queue(queue_name, redis) as q:
        yield q


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys(queue_name)


@pytest.fixture
def scripts(redis: aioredis.Redis) -> ScriptRegistry:
    return ScriptRegistry(redis)


async def run_order(scripts: ScriptRegistry, keys: QueueKeys, n: int) -> list[str]:
    taken = await commands.move_to_active(scripts, keys, Lease("tok", 30_000, "w1", n))
    return [j.id for j in taken.jobs]


async def completed(queue: Queue, n: int) -> None:
    async def done() -> bool:
        return (await queue.get_counts("completed"))["completed"] >= n

    await wait_until(done, within=15)


# ---- change_priority -----------------------------------------------------------------------


async def test_change_priority_moves_ready_jobs(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    plain = (await queue.add("plain")).id
    low = (await queue.add("low", priority=9)).id
    mid = (await queue.add("mid", priority=5)).id
    other = (await queue.add("other")).id

    await queue.change_priority(plain, 7)  # wait -> prioritized, between mid and low
    assert await queue.get_job_state(plain) is JobState.PRIORITIZED
    await queue.change_priority(low, 1)  # now first of the prioritized
    await queue.change_priority(mid, 0)  # prioritized -> tail of wait
    assert await queue.get_job_state(mid) is JobState.WAIT
    await queue.change_priority(other, 0)  # already without a priority: keeps its place
    assert await run_order(scripts, keys, 4) == [other, mid, low, plain]
    job = await queue.get_job(plain)
    assert job is not None and job.priority == 7
    changed = await stream_events(redis, queue.name, "priority-changed")
    assert [(e["job_id"], e["priority"]) for e in changed] == [
        (plain, "7"),
        (low, "1"),
        (mid, "0"),
        (other, "0"),
    ]


async def test_change_priority_of_a_delayed_or_paused_job(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    later = (await queue.add("later", delay=60_000)).id
    await queue.change_priority(later, 3)
    assert await queue.get_job_state(later) is JobState.DELAYED  # keeps its place...
    await queue.promote_job(later)
    assert await queue.get_job_state(later) is JobState.PRIORITIZED  # ...and uses it when ready
    await queue.pause()
    parked = (await queue.add("parked")).id
    await queue.change_priority(parked, 2)
    assert await queue.get_job_state(parked) is JobState.PRIORITIZED
    await queue.resume()
    assert await run_order(scripts, keys, 2) == [parked, later]


async def test_change_priority_refuses_bad_input(queue: Queue) -> None:
    job_id = (await queue.add("a")).id
    for bad in (-1, 2**21 + 1, 1.5, True, "2"):
        with pytest.raises(InvalidJobOptions, match="priority="):
            await queue.change_priority(job_id, bad)  # type: ignore[arg-type]
    with pytest.raises(JobNotFound, match="change_priority"):
        await queue.change_priority("missing", 1)


# ---- update_data ---------------------------------------------------------------------------


async def test_update_data_from_outside(queue: Queue, redis: aioredis.Redis) -> None:
    job_id = (await queue.add("a", {"v": 1})).id
    await queue.update_data(job_id, {"v": 2, "note": "é"})
    job = await queue.get_job(job_id)
    assert job is not None and job.data == {"v": 2, "note": "é"}
    assert [e["job_id"] for e in await stream_events(redis, queue.name, "data-updated")] == [job_id]
    with pytest.raises(JobNotFound):
        await queue.update_data("missing", 1)
    with pytest.raises(InvalidJobData):
        await queue.update_data(job_id, {1, 2})
    small = Queue(queue.name, queue.client, max_payload=10)
    with pytest.raises(PayloadTooLarge):
        await small.update_data(job_id, "x" * 100)
    job = await queue.get_job(job_id)
    assert job is not None and job.data == {"v": 2, "note": "é"}  # refused updates wrote nothing


async def test_update_data_is_fenced_by_the_lock(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys
) -> None:
    job_id = (await queue.add("a", 1)).id
    (taken,) = (await commands.move_to_active(scripts, keys, Lease("tok", 30_000, "w", 1))).jobs
    with pytest.raises(LockLost):
        await commands.update_data(scripts, keys, job_id, "2", "tok:99")
    await commands.update_data(scripts, keys, job_id, "3", taken.token)
    job = await queue.get_job(job_id)
    assert job is not None and job.data == 3


async def test_a_processor_updates_its_data(queue: Queue, queue_name: str, redis_url: str) -> None:
    async def process(job: Job) -> str:
        await job.update_data({**job.data, "step": 2})
        return "ok"

    def process_sync(job: Job) -> str:
        job.update_data_sync({**job.data, "step": 3})
        return "ok"

    first = (await queue.add("a", {"step": 1})).id
    async with running_worker(queue_name, process, redis_url):
        await completed(queue, 1)
    second = (await queue.add("b", {"step": 1})).id
    async with running_worker(queue_name, process_sync, redis_url):
        await completed(queue, 2)
    for job_id, step in ((first, 2), (second, 3)):
        job = await queue.get_job(job_id)
        assert job is not None and job.data == {"step": step}


# ---- extend_lock ---------------------------------------------------------------------------


async def test_renewals_never_shorten_a_lock(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    job_id = (await queue.add("a")).id
    (taken,) = (await commands.move_to_active(scripts, keys, Lease("tok", 1_000, "w", 1))).jobs
    assert await commands.extend_locks(scripts, keys, 60_000, [(job_id, taken.token)]) == []
    assert await commands.extend_locks(scripts, keys, 1_000, [(job_id, taken.token)]) == []
    assert await redis.pttl(keys.lock(job_id)) > 50_000


async def test_a_processor_extends_its_lock_beyond_the_lock_duration(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    extended = asyncio.Event()
    release = asyncio.Event()

    async def process(job: Job) -> None:
        await job.extend_lock(120_000)
        extended.set()
        await release.wait()

    job_id = (await queue.add("long")).id
    async with running_worker(queue_name, process, redis_url, lock_duration=500):
        await asyncio.wait_for(extended.wait(), 10)
        await asyncio.sleep(0.6)  # more than one renewal of 500 ms
        assert await redis.pttl(keys.lock(job_id)) > 100_000
        release.set()
        await completed(queue, 1)


async def test_extend_lock_raises_when_the_lock_is_gone(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis, keys: QueueKeys
) -> None:
    errors: list[BaseException] = []

    async def process(job: Job) -> None:
        await redis.delete(keys.lock(job.id))  # as if it had expired
        try:
            await job.extend_lock(10_000)
        except LockLost as exc:
            errors.append(exc)
        with pytest.raises(InvalidJobOptions, match="extend_lock"):
            await job.extend_lock(0)

    await queue.add("a")
    async with running_worker(queue_name, process, redis_url):

        async def seen() -> bool:
            return bool(errors)

        await wait_until(seen, within=10)
    assert "extend_lock" in str(errors[0])


# ---- move_to_delayed -----------------------------------------------------------------------


async def test_a_processor_moves_its_job_to_delayed_without_using_an_attempt(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis
) -> None:
    runs: list[tuple[int, int]] = []

    async def process(job: Job) -> str:
        runs.append((job.attempts_made, job.attempts_started))
        if len(runs) == 1:
            await job.move_to_delayed(delay=300)
            raise DelayedError()
        return "done"

    job_id = (await queue.add("poll", attempts=1)).id
    async with running_worker(queue_name, process, redis_url):
        await completed(queue, 1)
    assert runs == [(0, 1), (0, 2)]  # the same attempt, started twice
    job = await queue.get_job(job_id)
    assert job is not None and job.returnvalue == "done" and job.failed_reason is None
    (delayed,) = await stream_events(redis, queue_name, "delayed")
    assert delayed["prev"] == "active" and delayed["job_id"] == job_id
    assert job.processed_on is not None and job.processed_on >= int(delayed["delay"])
    assert await stream_events(redis, queue_name, "retrying") == []


async def test_a_sync_processor_moves_its_job_to_a_timestamp(
    queue: Queue, queue_name: str, redis_url: str, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    moved = asyncio.Event()
    loop = asyncio.get_running_loop()
    target = 4_000_000_000_000  # far in the future

    def process(job: Job) -> None:
        assert job.move_to_delayed_sync(target) == target
        loop.call_soon_threadsafe(moved.set)
        raise DelayedError()

    job_id = (await queue.add("later")).id
    async with running_worker(queue_name, process, redis_url):
        await asyncio.wait_for(moved.wait(), 10)

        async def delayed() -> bool:
            return await queue.get_job_state(job_id) is JobState.DELAYED

        await wait_until(delayed, within=5)
    assert await redis.zscore(keys.delayed, job_id) == target
    assert await redis.exists(keys.lock(job_id)) == 0
    job = await queue.get_job(job_id)
    assert job is not None and job.attempts_made == 0


async def test_delayed_error_without_a_move_is_a_failed_attempt(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    async def process(job: Job) -> None:
        raise DelayedError()

    job_id = (await queue.add("a", attempts=1)).id
    async with running_worker(queue_name, process, redis_url):

        async def failed() -> bool:
            return (await queue.get_counts("failed"))["failed"] == 1

        await wait_until(failed, within=10)
    job = await queue.get_job(job_id)
    assert job is not None and "without job.move_to_delayed()" in (job.failed_reason or "")


async def test_move_to_delayed_is_fenced_and_checks_its_arguments(
    queue: Queue, scripts: ScriptRegistry, keys: QueueKeys, redis: aioredis.Redis
) -> None:
    job_id = (await queue.add("a")).id
    with pytest.raises(LockLost):
        await commands.move_to_delayed(scripts, keys, job_id, "tok:1", delay=10)
    (taken,) = (await commands.move_to_active(scripts, keys, Lease("tok", 30_000, "w", 1))).jobs
    with pytest.raises(LockLost):
        await commands.move_to_delayed(scripts, keys, job_id, "other:1", delay=10)
    seconds, micros = await redis.time()
    before = int(seconds) * 1000 + int(micros) // 1000
    due = await commands.move_to_delayed(scripts, keys, job_id, taken.token, delay=5_000)
    assert before + 5_000 <= due < before + 6_000
    assert await redis.zscore(keys.delayed, job_id) == due
    assert await redis.zscore(keys.active, job_id) is None
    with pytest.raises(LockLost):  # its lock went with it
        await commands.move_to_delayed(scripts, keys, job_id, taken.token, delay=10)

    job = Job("1", "q", "n", None, {}, 0)
    for args, kwargs in (((), {}), ((5,), {"delay": 5}), ((-1,), {}), ((), {"delay": 1.5})):
        with pytest.raises(InvalidJobOptions, match="move_to_delayed"):
            await job.move_to_delayed(*args, **kwargs)


# ---- SyncQueue -----------------------------------------------------------------------------


def test_sync_queue_doors(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        job_id = queue.add("a", 1).id
        queue.change_priority(job_id, 4)
        queue.update_data(job_id, 2)
        job = queue.get_job(job_id)
        assert job is not None and (job.priority, job.data) == (4, 2)
        assert job.state is JobState.PRIORITIZED
        assert queue.get_workers() == []
        assert queue.get_metrics("completed").count == 0
        queue.rate_limit(10_000)
        assert 0 < queue.get_rate_limit_ttl() <= 10_000
