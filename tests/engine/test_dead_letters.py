"""Dead-letter queues: jobs that fail for good move atomically to a queue of the same layout,
with everything they carried; ``replay_dead_letters`` puts them back with fresh attempts."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
import redis.asyncio as aioredis
from support.streams import stream_events
from support.workers import WorkerProcess, running_worker, wait_until

from engine import (
    Backoff,
    FlowProducer,
    InvalidJobOptions,
    Job,
    JobNotFound,
    JobState,
    LockLost,
    Queue,
    UnrecoverableError,
    Worker,
    commands,
)
from engine.keys import QueueKeys
from engine.scripts import ScriptRegistry


async def count_is(queue: Queue, state: str, n: int, within: float = 20) -> None:
    async def reached() -> bool:
        return (await queue.get_counts(state))[state] == n

    await wait_until(reached, within=within)


async def test_exhausted_job_moves_to_the_dead_letter_queue_with_everything(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    dlq_name = queue_name + "-dead"

    async def process(job: Job) -> Any:
        await job.log(f"attempt {job.attempts_started}")
        raise ConnectionError(f"upstream down ({job.attempts_started})")

    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        added = await queue.add(
            "sync-crm", {"account": 42}, attempts=2, backoff=Backoff.fixed(10), priority=3
        )
        async with running_worker(queue_name, process, redis_url, dead_letter=dlq_name):
            await count_is(dlq, "failed", 1)
        assert await queue.get_job(added.id) is None  # moved, not copied
        assert await queue.get_counts("failed", "active") == {"failed": 0, "active": 0}
        assert await queue.get_totals() == (0, 1)
        assert await redis.hget(QueueKeys(queue_name).counters, "dead_lettered") == "1"

        (dl_id,) = await dlq.get_job_ids("failed")
        letter = await dlq.get_job(dl_id)
        assert letter is not None and letter.state is JobState.FAILED
        assert (letter.origin_queue, letter.origin_id) == (queue_name, added.id)
        assert letter.name == "sync-crm" and letter.data == {"account": 42}
        assert letter.opts == added.opts and letter.priority == 3
        assert letter.failed_reason == "ConnectionError: upstream down (2)"
        assert any("upstream down (2)" in line for line in letter.stacktrace)
        assert (letter.attempts, letter.attempts_made) == (2, 2)
        assert letter.finished_on is not None
        assert await dlq.get_job_logs(dl_id) == ["attempt 1", "attempt 2"]
        assert await redis.exists(QueueKeys(queue_name).logs(added.id)) == 0
        meta = await redis.hgetall(QueueKeys(dlq_name).meta)
        assert meta["dead_letter"] == "1" and meta["version"] == "1"

        (failed,) = await stream_events(redis, queue_name, "failed")
        assert (failed["dead_letter"], failed["dead_letter_id"]) == (dlq_name, dl_id)
        (moved,) = await stream_events(redis, dlq_name, "dead_lettered")
        assert moved == {
            "event": "dead_lettered",
            "job_id": dl_id,
            "name": "sync-crm",
            "origin_queue": queue_name,
            "origin_id": added.id,
            "_id": moved["_id"],
        }


async def test_which_failures_are_dead_lettered(redis_url: str, queue_name: str) -> None:
    """Final failures are (a job's own dead_letter wins over none on the worker);
    retried attempts and cancellations are not."""
    dlq_name = queue_name + "-dlq"
    started = asyncio.Event()

    async def process(job: Job) -> Any:
        if job.name == "hopeless":
            raise UnrecoverableError("bad input")
        if job.name == "flaky" and job.attempts_started == 1:
            raise ValueError("once")
        if job.name == "long":
            started.set()
            await asyncio.sleep(30)
        return "ok"

    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        hopeless = await queue.add("hopeless", {}, attempts=5, dead_letter=dlq_name)
        flaky = await queue.add("flaky", {}, attempts=2, dead_letter=dlq_name)
        long = await queue.add("long", {}, dead_letter=dlq_name)
        plain = await queue.add("hopeless", {})  # no dead-letter queue anywhere
        async with running_worker(queue_name, process, redis_url, concurrency=4):
            await asyncio.wait_for(started.wait(), 15)
            await queue.cancel_job(long.id, by="ops")
            await count_is(queue, "failed", 2)
            await count_is(queue, "completed", 1)
        assert await queue.get_job_state(long.id) is JobState.FAILED  # cancelled: stays
        assert await queue.get_job_state(plain.id) is JobState.FAILED
        assert await queue.get_job_state(flaky.id) is JobState.COMPLETED
        assert await queue.get_job(hopeless.id) is None
        (letter,) = await dlq.get_jobs("failed")
        assert letter.origin_id == hopeless.id and letter.attempts_made == 1


async def test_replay_puts_dead_letters_back_with_fresh_attempts(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    dlq_name = queue_name + "-dead"
    healthy = False

    async def process(job: Job) -> Any:
        await job.log(f"run {job.attempts_started}")
        if not healthy:
            raise RuntimeError("down")
        return job.data

    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        jobs = [await queue.add("call", {"n": n}, attempts=2) for n in range(3)]
        async with running_worker(queue_name, process, redis_url, dead_letter=dlq_name):
            await count_is(dlq, "failed", 3)
        letters = {j.origin_id: j.id for j in await dlq.get_jobs("failed", 0, -1)}
        assert set(letters) == {j.id for j in jobs}

        healthy = True
        first = letters[jobs[0].id]
        result = await dlq.replay_dead_letters([first, "999"])
        assert result.replayed == {first: (queue_name, jobs[0].id)}
        assert result.skipped == {"999": "not a dead letter here"}
        back = await queue.get_job(jobs[0].id)
        assert back is not None and back.state is JobState.WAIT
        assert (back.attempts, back.attempts_made, back.failed_reason) == (2, 0, None)
        assert back.attempts_started == 2  # kept, so lock tokens are never reused
        assert back.data == {"n": 0}
        assert await queue.get_job_logs(jobs[0].id) == ["run 1", "run 2"]
        (replayed,) = await stream_events(redis, dlq_name, "replayed")
        assert (replayed["job_id"], replayed["origin_id"]) == (first, jobs[0].id)

        rest = await dlq.replay_dead_letters(count=10)  # fewer left than asked
        assert sorted(rest.replayed) == sorted(letters[j.id] for j in jobs[1:])
        assert await dlq.get_counts("failed") == {"failed": 0}
        async with running_worker(queue_name, process, redis_url, dead_letter=dlq_name):
            await count_is(queue, "completed", 3)
        for job in jobs:
            done = await queue.get_job(job.id)
            assert done is not None and done.returnvalue == job.data
            assert done.attempts_made == 1
        assert await dlq.get_counts("failed") == {"failed": 0}


async def test_replay_by_count_passes_over_conflicts_and_groups_origins(
    redis_url: str, queue_name: str
) -> None:
    dlq_name = queue_name + "-dead"
    other_name = queue_name + "-other"

    async def process(job: Job) -> Any:
        raise UnrecoverableError("no")

    async with (
        Queue(queue_name, redis_url) as queue,
        Queue(other_name, redis_url) as other,
        Queue(dlq_name, redis_url) as dlq,
    ):
        await queue.add("a", {}, job_id="order-1")
        await queue.add("a", {}, job_id="order-2")
        await other.add("b", {}, job_id="order-3")
        async with (
            running_worker(queue_name, process, redis_url, dead_letter=dlq_name),
            running_worker(other_name, process, redis_url, dead_letter=dlq_name),
        ):
            await count_is(dlq, "failed", 3)
        await queue.add("a", {"new": True}, job_id="order-1")  # the id is taken again
        oldest = await dlq.get_job_ids("failed", 0, -1)
        result = await dlq.replay_dead_letters(count=2)
        assert len(result.replayed) == 2
        skipped = [i for i in oldest if i not in result.replayed]
        conflict = {
            i: "the origin queue has a job with that id" for i in skipped if i in result.skipped
        }
        assert len(conflict) == 1 and result.skipped == conflict
        (left,) = await dlq.get_jobs("failed", 0, -1)
        assert left.origin_id == "order-1"
        assert await queue.get_job_state("order-2") is JobState.WAIT
        assert await other.get_job_state("order-3") is JobState.WAIT
        again = await dlq.replay_dead_letters()
        assert again.replayed == {} and list(again.skipped) == [left.id]


async def test_dead_letter_validation(redis_url: str, queue_name: str) -> None:
    async def process(job: Job) -> Any:
        return None

    with pytest.raises(InvalidJobOptions, match="own dead-letter queue"):
        Worker(queue_name, process, dead_letter=queue_name)
    with pytest.raises(InvalidJobOptions, match="dead_letter: queue name 'a b'"):
        Worker(queue_name, process, dead_letter="a b")
    async with Queue(queue_name, redis_url) as queue:
        with pytest.raises(InvalidJobOptions, match="own dead-letter queue"):
            await queue.add("x", {}, dead_letter=queue_name)
        with pytest.raises(InvalidJobOptions, match="dead_letter: queue name"):
            await queue.add("x", {}, dead_letter="{x}")
        with pytest.raises(InvalidJobOptions, match="not both"):
            await queue.replay_dead_letters(["1"], count=1)
        with pytest.raises(InvalidJobOptions, match="count=0"):
            await queue.replay_dead_letters(count=0)
        added = await queue.add("x", {}, dead_letter="elsewhere")
        assert json.loads(json.dumps(added.opts))["dead_letter"] == "elsewhere"


# ---- the scripts, called directly ----------------------------------------------------------


async def test_dead_letter_and_replay_scripts_directly(
    redis: aioredis.Redis, queue_name: str, redis_url: str
) -> None:
    keys, dl = QueueKeys(queue_name), QueueKeys(queue_name + "-dl")
    scripts = ScriptRegistry(redis)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("a", {"x": 1})
        await queue.add("b", {"x": 2})
        taken = await commands.move_to_active(scripts, keys, commands.Lease("tok", 30_000, "w", 1))
        (job,) = taken.jobs
        with pytest.raises(LockLost):
            await commands.dead_letter_job(scripts, keys, dl, job.id, "tok:99", "r", "[]", 10_000)
        with pytest.raises(JobNotFound):
            await commands.dead_letter_job(scripts, keys, dl, "nope", job.token, "r", "[]", 10_000)
        dl_id, nxt = await commands.dead_letter_job(
            scripts,
            keys,
            dl,
            job.id,
            job.token,
            "Boom: x",
            '["line"]',
            10_000,
            commands.Lease("tok", 30_000, "w", 1),
        )
        assert dl_id == "1"
        assert [t.id for t in nxt.jobs] == ["2"]  # took the next job in the same call
        letter = await redis.hgetall(dl.job(dl_id))
        assert letter["origin_queue"] == queue_name and letter["origin_id"] == job.id
        assert letter["failed_reason"] == "Boom: x" and letter["stacktrace"] == '["line"]'
        assert letter["attempts_made"] == "1" and letter["data"] == '{"x":1}'
        assert await redis.exists(keys.job(job.id), keys.lock(job.id)) == 0
        assert await redis.zscore(keys.active, job.id) is None

        other = QueueKeys(queue_name + "-other")
        assert await commands.replay_dead_letters(scripts, dl, other, [dl_id], 10_000) == [3]
        await redis.hset(keys.job(job.id), mapping={"name": "squatter", "data": "{}"})
        assert await commands.replay_dead_letters(scripts, dl, keys, [dl_id, "7"], 10_000) == [
            2,
            0,
        ]
        await redis.delete(keys.job(job.id))
        assert await commands.replay_dead_letters(scripts, dl, keys, [dl_id], 10_000) == [1]
        assert await queue.get_job_state(job.id) is JobState.WAIT
        assert await redis.exists(dl.job(dl_id)) == 0
        assert await redis.zcard(dl.failed) == 0


# ---- real worker processes -----------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_dead_letters_from_a_real_worker_process_replayed_to_another(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    dlq_name = queue_name + "-dead"
    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        added = await queue.add_bulk(
            [("call", {"n": n, "error": f"boom {n}"}, {"attempts": 2}) for n in range(5)]
        )
        failing = WorkerProcess(
            "support.jobs:always_fails", queue_name, redis_url, concurrency=5,
            extra_args=["--dead-letter", dlq_name],
        )  # fmt: skip
        procs.append(failing)
        await count_is(dlq, "failed", 5, within=30)
        failing.signal(signal.SIGTERM)
        assert await asyncio.to_thread(failing.wait, 20) == 0
        letters = await dlq.get_jobs("failed", 0, -1)
        assert {j.origin_id for j in letters} == {j.id for j in added}
        for letter in letters:
            assert letter.failed_reason == f"RuntimeError: boom {letter.data['n']}"
            assert letter.attempts_made == 2
            assert await dlq.get_job_logs(letter.id) == ["attempt 1", "attempt 2"]

        result = await dlq.replay_dead_letters(count=5)
        assert len(result.replayed) == 5 and not result.skipped
        fixed = WorkerProcess("support.jobs:noop", queue_name, redis_url, concurrency=5)
        procs.append(fixed)
        await count_is(queue, "completed", 5, within=30)
        assert await queue.get_totals() == (5, 5)
        assert await dlq.get_counts("failed") == {"failed": 0}


async def test_a_dead_lettered_job_is_counted_frees_its_dedup_id_and_settles_its_parent(
    redis_url: str, queue_name: str
) -> None:
    """A dead letter is a final failure like any other: the minute's metrics count it, its
    deduplication id is free again, and the parent of a flow child is not left waiting."""
    dlq_name = queue_name + "-dead"

    async def process(job: Job) -> Any:
        if job.name == "child":
            raise UnrecoverableError("bad row")
        return "parent ran"

    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        await queue.add("child", {}, deduplication={"id": "row-1"})
        flow = await FlowProducer(redis_url).add(
            {
                "name": "parent",
                "queue": queue_name,
                "children": [
                    {"name": "child", "queue": queue_name, "opts": {"dead_letter": dlq_name}}
                ],
            }
        )
        async with running_worker(queue_name, process, redis_url, dead_letter=dlq_name):
            await count_is(dlq, "failed", 2)
            await count_is(queue, "completed", 1)  # the parent was released and ran
        assert flow.job is not None
        assert await queue.get_job_state(flow.job.id) == "completed"
        assert await queue.get_deduplication_job_id("row-1") is None
        failed = await queue.get_metrics("failed")
        assert failed.count == 2
