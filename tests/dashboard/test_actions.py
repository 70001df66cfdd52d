"""JobActions and CorralBackend against a real server and engine workload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from workload import finish_jobs, take_jobs

from dashboard.actions import JobActions, ReadOnlyError
from dashboard.bulk import BulkRun, select_jobs
from dashboard.corral_backend import CorralBackend
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """A queue with 5 waiting, 3 completed, 2 failed and 1 delayed job."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(10):
            await q.add("send", {"i": i})
        await q.add("later", {"i": 99}, delay=60_000, job_id="later")
        await finish_jobs(q, complete=3, fail=2)
        yield q


async def test_retry_moves_a_failed_job_back_to_wait(queue: Queue, redis: aioredis.Redis) -> None:
    actions = JobActions(CorralBackend(), redis, read_only=False)
    failed = await queue.get_job_ids("failed")
    message = await actions.retry(queue.name, failed[0])
    assert message == f"retried job {failed[0]!r}: back in wait"
    assert await queue.get_job_state(failed[0]) == "wait"
    again = await actions.retry(queue.name, failed[0])
    assert again == f"not retried: job {failed[0]!r} is now wait"


async def test_retry_all_discard_promote_pause_clean(queue: Queue, redis: aioredis.Redis) -> None:
    actions = JobActions(CorralBackend(), redis, read_only=False)
    selection = await select_jobs(CorralBackend(), redis, queue.name, "failed")
    message = await actions.retry_selected(selection, BulkRun(2))
    assert message == f"retried 2 failed jobs of {queue.name!r}"
    assert (await queue.get_counts("failed"))["failed"] == 0
    assert await actions.promote(queue.name, "later") == "promoted job 'later'"
    assert await actions.promote(queue.name, "later") == "not promoted: job 'later' is now wait"
    assert await actions.discard(queue.name, "later") == "discarded job 'later'"
    assert (
        await actions.discard(queue.name, "later") == "not discarded: job 'later' no longer exists"
    )
    await actions.set_paused(queue.name, True)
    assert await queue.is_paused()
    await actions.set_paused(queue.name, False)
    assert not await queue.is_paused()
    assert await actions.clean(queue.name, "completed", 0, 100) == "removed 3 completed jobs"


async def test_read_only_refuses_every_action(queue: Queue, redis: aioredis.Redis) -> None:
    actions = JobActions(CorralBackend(), redis, read_only=True)
    failed = await queue.get_job_ids("failed")
    with pytest.raises(ReadOnlyError):
        await actions.retry(queue.name, failed[0])
    selection = await select_jobs(CorralBackend(), redis, queue.name, "failed")
    with pytest.raises(ReadOnlyError):
        await actions.retry_selected(selection, BulkRun(2))
    with pytest.raises(ReadOnlyError):
        await actions.discard(queue.name, failed[0])
    with pytest.raises(ReadOnlyError):
        await actions.promote(queue.name, "later")
    with pytest.raises(ReadOnlyError):
        await actions.set_paused(queue.name, True)
    with pytest.raises(ReadOnlyError):
        await actions.clean(queue.name, "failed", 0, 10)
    assert (await queue.get_counts("failed"))["failed"] == 2
    assert not await queue.is_paused()


async def test_a_completed_job_is_retried_as_completed(queue: Queue, redis: aioredis.Redis) -> None:
    actions = JobActions(CorralBackend(), redis, read_only=False)
    done = (await queue.get_job_ids("completed"))[0]
    assert (
        await actions.retry(queue.name, done, "completed") == f"retried job {done!r}: back in wait"
    )
    assert await queue.get_job_state(done) == "wait"
    failed = (await queue.get_job_ids("failed"))[0]
    refused = await actions.retry(queue.name, failed, "completed")
    assert refused == f"not retried: job {failed!r} is now failed"
    assert await queue.get_job_state(failed) == "failed"


async def test_retry_selected_acts_only_on_the_jobs_selected(
    queue: Queue, redis: aioredis.Redis
) -> None:
    backend = CorralBackend()
    actions = JobActions(backend, redis, read_only=False)
    actions.batch_size = 1
    selection = await select_jobs(backend, redis, queue.name, "failed")
    assert set(selection.ids) == set(await queue.get_job_ids("failed"))
    first, second = selection.ids
    # meanwhile: one selected job is retried and completes, a new job fails
    await queue.retry_job(first)
    while await queue.get_job_state(first) != "completed":
        await finish_jobs(queue, complete=1, fail=0)
    await queue.add("late", {}, job_id="late")
    while await queue.get_job_state("late") != "failed":
        await finish_jobs(queue, complete=0, fail=1)
    run = BulkRun(len(selection.ids))
    message = await actions.retry_selected(selection, run)
    assert message == (f"retried 1 failed job of {queue.name!r}; 1 not retried: 1 now completed")
    assert run.done == 2
    assert await queue.get_job_state(first) == "completed"
    assert await queue.get_job_state(second) == "wait"
    assert await queue.get_job_state("late") == "failed"


async def test_selection_is_capped_and_a_stopped_run_says_what_is_left(
    queue: Queue, redis: aioredis.Redis
) -> None:
    backend = CorralBackend()
    for i in range(8):
        await queue.add("more", {"i": i})
    while (await queue.get_counts("wait"))["wait"]:
        await finish_jobs(queue, complete=0, fail=1)
    failed = await queue.get_job_ids("failed", 0, 99)
    assert len(failed) == 15
    capped = await select_jobs(backend, redis, queue.name, "failed", limit=4)
    assert capped.capped and capped.total == 15
    assert list(capped.ids) == failed[:4]  # the newest, as the failed tab shows them
    actions = JobActions(backend, redis, read_only=False)
    actions.batch_size = 3
    run = BulkRun(len(capped.ids))
    run.stop()
    assert await actions.retry_selected(capped, run) == (
        f"retried 0 failed jobs of {queue.name!r}; stopped: 4 not attempted"
    )
    assert (await queue.get_counts("failed"))["failed"] == 15
    whole = await select_jobs(backend, redis, queue.name, "failed", limit=100)
    assert not whole.capped and set(whole.ids) == set(failed)
    message = await actions.retry_selected(whole, BulkRun(15))
    assert message == f"retried 15 failed jobs of {queue.name!r}"
    assert (await queue.get_counts("failed"))["failed"] == 0


async def test_clean_runs_in_batches_and_stops_when_asked(
    queue: Queue, redis: aioredis.Redis
) -> None:
    actions = JobActions(CorralBackend(), redis, read_only=False)
    actions.batch_size = 1
    run = BulkRun(3)
    assert await actions.clean(queue.name, "completed", 0, 2, run) == "removed 2 completed jobs"
    assert run.done == 2
    assert (await queue.get_counts("completed"))["completed"] == 1
    stopped = BulkRun(1)
    stopped.stop()
    message = await actions.clean(queue.name, "completed", 0, 1, stopped)
    assert message == "removed 0 completed jobs; stopped: 1 not attempted"
    assert (await queue.get_counts("completed"))["completed"] == 1


async def test_pages_are_bounded_and_ordered_like_the_engine(
    queue: Queue, redis: aioredis.Redis
) -> None:
    backend = CorralBackend()
    for state in ("wait", "completed", "failed", "delayed"):
        page = await backend.read_page(redis, queue.name, state, 0, 50)
        assert [row.id for row in page.rows] == await queue.get_job_ids(state)
        assert page.total == len(page.rows)
    second = await backend.read_page(redis, queue.name, "wait", 2, 2)
    assert [r.id for r in second.rows] == (await queue.get_job_ids("wait"))[2:4]
    failed = await backend.read_page(redis, queue.name, "failed", 0, 10)
    assert all(r.failed_reason == "boom" and r.attempts_made == 1 for r in failed.rows)


async def test_job_detail_and_malformed_jobs(queue: Queue, redis: aioredis.Redis) -> None:
    backend = CorralBackend()
    detail = await backend.read_job(redis, queue.name, "later")
    assert detail is not None
    assert (detail.state, detail.name, detail.data, detail.malformed) == (
        "delayed",
        "later",
        {"i": 99},
        False,
    )
    keys = QueueKeys(queue.name)
    await redis.hset(keys.job("bad"), mapping={"name": "x", "data": "{not json", "ts": "1"})
    await redis.lpush(keys.wait, "bad")
    await redis.hset(keys.job("noname"), mapping={"data": "1"})
    await redis.lpush(keys.wait, "noname")
    bad = await backend.read_job(redis, queue.name, "bad")
    assert bad is not None and bad.malformed and bad.state == "wait"
    assert ("data", "{not json") in bad.raw
    page = await backend.read_page(redis, queue.name, "wait", 0, 50)
    flags = {row.id: row.malformed for row in page.rows}
    assert flags["noname"] is True
    assert flags[(await queue.get_job_ids("wait"))[-1]] is False
    assert await backend.read_job(redis, queue.name, "missing") is None


async def test_active_jobs_show_a_lost_lock(queue: Queue, redis: aioredis.Redis) -> None:
    held = await take_jobs(queue, 1, 60_000)
    lost = await take_jobs(queue, 1, 60_000)
    await redis.delete(QueueKeys(queue.name).lock(lost[0]))  # as if the lock had expired
    jobs, total = await CorralBackend().read_active(redis, queue.name, 0, 10)
    assert total == 2
    assert {job.id: job.lock_held for job in jobs} == {held[0]: True, lost[0]: False}
    assert all(job.name == "send" for job in jobs)
