"""``SyncQueue``: the blocking face of ``Queue``, tested from plain (non-async) test functions."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis.asyncio as aioredis

from engine import commands
from engine.commands import Lease
from engine.errors import InvalidJobOptions, JobNotFound, JobStateError, PayloadTooLarge
from engine.job import ALL_STATES, JobState
from engine.keys import QueueKeys
from engine.options import Retention
from engine.scripts import ScriptRegistry
from engine.sync import SyncQueue


def run_one(url: str, queue_name: str, outcome: str) -> str:
    """Take the next ready job and complete it or fail it for good, as a worker would."""

    async def go() -> str:
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            scripts, keys = ScriptRegistry(client), QueueKeys(queue_name)
            taken = await commands.move_to_active(scripts, keys, Lease("tok-sync", 30_000, "w", 1))
            (job,) = taken.jobs
            if outcome == "completed":
                await commands.complete_job(scripts, keys, job.id, job.token, "7", Retention())
            else:
                await commands.fail_job(
                    scripts, keys, job.id, job.token, "nope", "[]", -1, Retention()
                )
            return job.id
        finally:
            await client.aclose()

    return asyncio.run(go())


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("corral-sync-")]


def test_add_and_read(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        assert queue.name == queue_name
        job = queue.add("email", {"to": "a@example.com"}, attempts=2)
        bulk = queue.add_bulk([("b", 1), ("c", 2, {"priority": 1})])
        delayed = queue.add("later", delay=60_000)

        assert job.id == "1"
        assert job.state is JobState.WAIT
        assert [j.id for j in bulk] == ["2", "3"]
        assert queue.get_counts() == {
            **{s.value: 0 for s in ALL_STATES},
            "wait": 2,
            "prioritized": 1,
            "delayed": 1,
        }
        assert queue.get_counts("wait") == {"wait": 2}
        stored = queue.get_job(job.id)
        assert stored is not None
        assert stored.data == {"to": "a@example.com"}
        assert stored.attempts == 2
        assert queue.get_job("missing") is None
        assert queue.get_job_state(delayed.id) is JobState.DELAYED
        assert [j.id for j in queue.get_jobs("wait")] == ["2", "1"]


def test_errors_surface_with_their_own_types(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url, max_payload=50) as queue:
        with pytest.raises(PayloadTooLarge):
            queue.add("big", "x" * 100)
        with pytest.raises(InvalidJobOptions, match="attempts"):
            queue.add("bad", attempts=0)
        with pytest.raises(JobNotFound):
            queue.remove_job("missing")
        assert queue.get_counts("wait") == {"wait": 0}


def test_pause_and_resume(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.add("a")
        assert queue.is_paused() is False
        assert queue.pause() is True
        assert queue.pause() is False
        assert queue.is_paused() is True
        assert queue.get_counts("wait", "paused") == {"wait": 0, "paused": 1}
        assert queue.resume() is True
        assert queue.resume() is False
        assert queue.get_counts("wait", "paused") == {"wait": 1, "paused": 0}


def test_retry(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.add("a")
        queue.add("b")
        queue.add("c")
        failed = [run_one(redis_url, queue_name, "failed") for _ in range(3)]
        assert queue.get_counts("failed") == {"failed": 3}

        queue.retry_job(failed[0])
        assert queue.get_job_state(failed[0]) is JobState.WAIT
        with pytest.raises(JobStateError) as info:
            queue.retry_job(failed[0])
        assert info.value.state == "wait"
        assert queue.retry_jobs() == 2
        assert queue.get_counts("failed", "wait") == {"failed": 0, "wait": 3}


def test_remove_promote_clean_drain_obliterate(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        queue.add("done")
        done = run_one(redis_url, queue_name, "completed")
        delayed = queue.add("later", delay=60_000).id
        waiting = queue.add("now").id

        assert queue.remove_job(waiting) == "wait"
        queue.promote_job(delayed)
        assert queue.get_job_state(delayed) is JobState.WAIT
        assert list(queue.clean(0, 10)) == [done]
        assert queue.drain() == 1
        assert queue.get_counts() == {s.value: 0 for s in ALL_STATES}
        queue.add("again")
        queue.obliterate()
        assert queue.get_job("1") is None
        assert queue.get_counts() == {s.value: 0 for s in ALL_STATES}


def test_close_stops_the_thread(queue_name: str, redis_url: str) -> None:
    queue = SyncQueue(queue_name, redis_url)
    thread = queue._thread
    assert thread.is_alive()
    queue.add("a")

    queue.close()

    assert not thread.is_alive()
    assert thread not in sync_threads()
    queue.close()  # a second close is harmless


def test_bad_arguments_leave_no_thread_behind(queue_name: str, redis_url: str) -> None:
    before = sync_threads()
    with pytest.raises(TypeError, match="redis:// URL"):
        SyncQueue(queue_name, redis_url.encode())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="queue name"):
        SyncQueue("bad name", redis_url)
    with pytest.raises(InvalidJobOptions, match="max_events"):
        SyncQueue(queue_name, redis_url, max_events=1)
    assert sync_threads() == before


def test_schedulers_and_deduplication(queue_name: str, redis_url: str) -> None:
    with SyncQueue(queue_name, redis_url) as queue:
        scheduler = queue.upsert_job_scheduler("s", every=60_000, start_date=10**13, job_data=1)
        assert scheduler.next_run == 10**13
        assert [s.id for s in queue.get_job_schedulers()] == ["s"]
        assert queue.get_job_scheduler("s") == scheduler
        assert queue.remove_job_scheduler("s") is True
        assert queue.get_job_scheduler("s") is None

        first = queue.add("x", 1, deduplication={"id": "d"})
        again = queue.add("x", 2, deduplication={"id": "d"})
        assert (again.id, again.deduplicated) == (first.id, True)
        assert queue.get_deduplication_job_id("d") == first.id
        assert queue.remove_deduplication_key("d") is True
        assert queue.get_deduplication_job_id("d") is None
