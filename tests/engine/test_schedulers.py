"""Job schedulers on a real server: every-N and cron ticks, limits and end dates, upsert and
remove, validation, and the scripts that keep one job per tick."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from croniter import croniter
from support.streams import stream_events
from support.workers import running_worker, wait_until

from engine import Job, JobState, Queue, commands
from engine.commands import Lease, move_to_active
from engine.errors import InvalidJobOptions
from engine.repeat import Timing
from engine.schedulers import tick_job_id


@pytest.fixture
async def queue(queue_name: str, redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


async def server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def delayed_score(redis: aioredis.Redis, queue: Queue, job_id: str) -> int | None:
    score = await redis.zscore(queue.keys.delayed, job_id)
    return None if score is None else int(score)


async def take_one(queue: Queue) -> str:
    taken = await move_to_active(queue.scripts, queue.keys, Lease("tok", 30_000, "w", 1))
    assert len(taken.jobs) == 1
    return taken.jobs[0].id


# ---- every N ms --------------------------------------------------------------------------


async def test_every_scheduler_runs_at_once_then_every_interval(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    scheduler = await queue.upsert_job_scheduler(
        "tick", every=300, job_name="ping", job_data={"n": 1}, job_opts={"attempts": 2}
    )
    first = scheduler.next_run
    assert first is not None
    assert scheduler.iterations == 1
    assert scheduler.last_job_id == tick_job_id("tick", first) == f"repeat-tick-{first}"
    job = await queue.get_job(scheduler.last_job_id)
    assert job is not None
    assert (job.name, job.data, job.attempts) == ("ping", {"n": 1}, 2)
    assert job.scheduler_id == "tick"
    assert job.state is JobState.WAIT  # the first tick is now

    ran: list[Job] = []

    async def process(job: Job) -> None:
        ran.append(job)

    async with running_worker(queue_name, process, redis_url, block_timeout=0.2):

        async def four_ran() -> bool:
            return len(ran) >= 4

        await wait_until(four_ran, within=20)
    ticks = [int(j.id.rsplit("-", 1)[1]) for j in ran]
    assert ticks[:4] == [first, first + 300, first + 600, first + 900]
    assert all(j.name == "ping" and j.scheduler_id == "tick" for j in ran)
    assert all((j.processed_on or 0) >= t for j, t in zip(ran, ticks, strict=True))
    after = await queue.get_job_scheduler("tick")
    assert after is not None
    assert after.iterations == len(ran) + 1  # the next job waits already
    assert after.next_run == ticks[-1] + 300
    assert after.last_job_id == tick_job_id("tick", ticks[-1] + 300)


async def test_limit_caps_the_number_of_jobs(queue: Queue, queue_name: str, redis_url: str) -> None:
    await queue.upsert_job_scheduler("capped", every=100, limit=3)
    ran: list[str] = []

    async def process(job: Job) -> None:
        ran.append(job.id)

    async with running_worker(queue_name, process, redis_url, block_timeout=0.2):

        async def ended() -> bool:
            found = await queue.get_job_scheduler("capped")
            return found is not None and found.ended and len(ran) == 3

        await wait_until(ended, within=20)
        await asyncio.sleep(0.5)  # nothing more comes
    assert len(ran) == 3
    scheduler = await queue.get_job_scheduler("capped")
    assert scheduler is not None
    assert (scheduler.iterations, scheduler.next_run, scheduler.last_job_id) == (3, None, ran[-1])
    assert await queue.get_counts("completed", "delayed", "wait") == {
        "completed": 3,
        "delayed": 0,
        "wait": 0,
    }
    # ended schedulers are listed last
    await queue.upsert_job_scheduler("later", every=60_000, start_date=10**13)
    assert [s.id for s in await queue.get_job_schedulers()] == ["later", "capped"]


async def test_end_date_stops_the_ticks(
    queue: Queue, queue_name: str, redis_url: str, redis: aioredis.Redis
) -> None:
    end = await server_ms(redis) + 1_000
    await queue.upsert_job_scheduler("until", every=250, end_date=end)
    ran: list[int] = []

    async def process(job: Job) -> None:
        ran.append(int(job.id.rsplit("-", 1)[1]))

    async with running_worker(queue_name, process, redis_url, block_timeout=0.2):

        async def ended() -> bool:
            found = await queue.get_job_scheduler("until")
            return found is not None and found.ended

        await wait_until(ended, within=20)
        await wait_until(lambda: _idle(queue), within=10)
    assert 3 <= len(ran) <= 5
    assert all(tick <= end for tick in ran)
    assert all(b - a == 250 for a, b in pairwise(ran))


async def _idle(queue: Queue) -> bool:
    counts = await queue.get_counts("wait", "active", "delayed")
    return sum(counts.values()) == 0


async def test_start_date_delays_the_first_tick(queue: Queue, redis: aioredis.Redis) -> None:
    start = await server_ms(redis) + 60_000
    scheduler = await queue.upsert_job_scheduler(
        "later", every=1000, start_date=datetime.fromtimestamp(start / 1000, UTC)
    )
    assert scheduler.next_run == start
    assert scheduler.last_job_id is not None
    assert await delayed_score(redis, queue, scheduler.last_job_id) == start


async def test_missed_ticks_are_skipped_not_run_in_a_burst(
    queue: Queue, redis: aioredis.Redis
) -> None:
    scheduler = await queue.upsert_job_scheduler("slow", every=100)
    assert scheduler.next_run is not None
    await asyncio.sleep(0.55)  # about five ticks pass with nobody taking the job
    job_id = await take_one(queue)
    now = await server_ms(redis)
    done = await queue._schedulers.schedule_next("slow", job_id)
    assert done is not None and done.status == "created"
    assert done.tick is not None
    assert now < done.tick <= now + 100 + 50  # the first tick after now (plus call time)
    assert (done.tick - scheduler.next_run) % 100 == 0
    assert await queue.get_counts("delayed", "wait") == {"delayed": 1, "wait": 0}


# ---- cron --------------------------------------------------------------------------------


async def test_cron_pattern_in_a_time_zone(queue: Queue, redis: aioredis.Redis) -> None:
    before = await server_ms(redis)
    scheduler = await queue.upsert_job_scheduler(
        "paris-9am", pattern="0 9 * * 1-5", tz="Europe/Paris", job_data={"report": True}
    )
    zone = ZoneInfo("Europe/Paris")
    expected = croniter("0 9 * * 1-5", datetime.fromtimestamp(before / 1000, zone))
    run_at = round(expected.get_next(float) * 1000)
    assert scheduler.next_run == run_at
    local = datetime.fromtimestamp(run_at / 1000, zone)
    assert (local.hour, local.minute) == (9, 0)
    assert local.weekday() < 5
    assert (scheduler.pattern, scheduler.tz, scheduler.every) == (
        "0 9 * * 1-5",
        "Europe/Paris",
        None,
    )
    assert scheduler.last_job_id is not None
    assert await delayed_score(redis, queue, scheduler.last_job_id) == run_at

    # the next tick after that one is computed the same way
    job_id = scheduler.last_job_id
    await queue.promote_job(job_id)
    assert await take_one(queue) == job_id
    done = await queue._schedulers.schedule_next("paris-9am", job_id)
    assert done is not None and done.tick == round(expected.get_next(float) * 1000)


async def test_cron_with_seconds_runs_on_each_tick(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    await queue.upsert_job_scheduler("every-second", pattern="* * * * * *")  # seconds first
    ran: list[int] = []

    async def process(job: Job) -> None:
        ran.append(int(job.id.rsplit("-", 1)[1]))

    async with running_worker(queue_name, process, redis_url, block_timeout=0.2):

        async def three() -> bool:
            return len(ran) >= 3

        await wait_until(three, within=20)
    assert all(tick % 1000 == 0 for tick in ran)
    assert [b - a for a, b in pairwise(ran[:3])] == [1000, 1000]


# ---- upsert and remove -------------------------------------------------------------------


async def test_upserting_the_same_definition_changes_nothing(
    queue: Queue, redis: aioredis.Redis
) -> None:
    first = await queue.upsert_job_scheduler("same", every=5_000, job_data={"a": 1})
    results = await asyncio.gather(
        *(queue.upsert_job_scheduler("same", every=5_000, job_data={"a": 1}) for _ in range(20))
    )
    assert {(s.next_run, s.last_job_id, s.iterations) for s in results} == {
        (first.next_run, first.last_job_id, 1)
    }
    assert len(await stream_events(redis, queue.name, "added")) == 1


async def test_new_pattern_replaces_the_waiting_job(queue: Queue, redis: aioredis.Redis) -> None:
    old = await queue.upsert_job_scheduler("report", pattern="0 3 * * *", tz="UTC")
    new = await queue.upsert_job_scheduler("report", pattern="30 4 * * *", tz="Asia/Tokyo")
    assert old.last_job_id is not None and new.last_job_id is not None
    assert new.last_job_id != old.last_job_id
    assert await queue.get_job(old.last_job_id) is None
    assert await delayed_score(redis, queue, new.last_job_id) == new.next_run
    assert new.iterations == 1
    assert new.created == old.created
    assert await queue.get_job_ids("delayed") == [new.last_job_id]
    removed = await stream_events(redis, queue.name, "removed")
    assert [(e["job_id"], e["prev"]) for e in removed] == [(old.last_job_id, "delayed")]


async def test_new_job_data_keeps_the_pending_tick(queue: Queue) -> None:
    old = await queue.upsert_job_scheduler("data", every=60_000, start_date=10**13, job_data=1)
    new = await queue.upsert_job_scheduler("data", every=60_000, start_date=10**13, job_data=2)
    assert new.next_run == old.next_run == 10**13
    assert new.last_job_id is not None
    assert new.last_job_id == old.last_job_id
    job = await queue.get_job(new.last_job_id)
    assert job is not None and job.data == 2
    assert new.iterations == 1


async def test_remove_deletes_the_waiting_job(queue: Queue, redis: aioredis.Redis) -> None:
    scheduler = await queue.upsert_job_scheduler("gone", every=60_000, start_date=10**13)
    assert await queue.remove_job_scheduler("gone") is True
    assert await queue.remove_job_scheduler("gone") is False
    assert await queue.get_job_scheduler("gone") is None
    assert await queue.get_job_schedulers() == []
    assert scheduler.last_job_id is not None
    assert await queue.get_job(scheduler.last_job_id) is None
    assert await queue.get_counts("delayed") == {"delayed": 0}
    assert not await redis.exists(queue.keys.scheduler("gone"))


async def test_removed_scheduler_does_not_schedule_from_its_running_job(queue: Queue) -> None:
    scheduler = await queue.upsert_job_scheduler("stop", every=100)
    job_id = await take_one(queue)
    assert job_id == scheduler.last_job_id
    assert await queue.remove_job_scheduler("stop") is True
    assert await queue.get_job_state(job_id) is JobState.ACTIVE  # a running job is left alone
    assert await queue._schedulers.schedule_next("stop", job_id) is None
    assert await queue.get_counts("delayed", "wait") == {"delayed": 0, "wait": 0}


async def test_only_the_current_job_moves_the_scheduler_on(queue: Queue) -> None:
    scheduler = await queue.upsert_job_scheduler("once", every=60_000)
    job_id = await take_one(queue)
    # several takers racing for the same job (e.g. a job taken again after a stall)
    results = await asyncio.gather(
        *(queue._schedulers.schedule_next("once", job_id) for _ in range(10))
    )
    created = [r for r in results if r is not None and r.status == "created"]
    assert len(created) == 1
    assert all(r is None or r.status in ("created", "stale") for r in results)
    after = await queue.get_job_scheduler("once")
    assert after is not None
    assert after.iterations == 2
    assert after.next_run == (scheduler.next_run or 0) + 60_000
    assert await queue.get_counts("delayed") == {"delayed": 1}


async def test_a_scheduler_whose_job_vanished_resumes_on_upsert(queue: Queue) -> None:
    scheduler = await queue.upsert_job_scheduler("heal", every=60_000, start_date=10**13)
    await queue.drain(delayed=True)  # someone drops the waiting job
    again = await queue.upsert_job_scheduler("heal", every=60_000, start_date=10**13)
    assert again.last_job_id == scheduler.last_job_id
    assert again.last_job_id is not None
    assert await queue.get_job_state(again.last_job_id) is JobState.DELAYED


# ---- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of every"),
        ({"every": 1000, "pattern": "* * * * *"}, "exactly one of every"),
        ({"every": 0}, "every=0 is invalid"),
        ({"every": -5}, "every=-5 is invalid"),
        ({"every": 1.5}, "every=1.5 is invalid"),
        ({"pattern": "61 * * * *"}, "not a valid cron expression"),
        ({"pattern": "every day"}, "not a valid cron expression"),
        ({"pattern": ""}, "expected a cron expression"),
        ({"pattern": "0 9 * * *", "tz": "Mars/Olympus"}, "no such IANA time zone"),
        ({"every": 1000, "tz": "UTC"}, "only applies to a cron pattern"),
        ({"every": 1000, "limit": 0}, "limit=0 is invalid"),
        ({"every": 1000, "start_date": datetime(2030, 1, 1)}, "naive datetime"),
        ({"every": 1000, "start_date": "tomorrow"}, "start_date='tomorrow' is invalid"),
        ({"every": 1000, "start_date": 2_000, "end_date": 1_000}, "is before start_date"),
        ({"every": 1000, "job_opts": {"job_id": "x"}}, "cannot be set for a scheduler"),
        ({"every": 1000, "job_opts": {"delay": 5}}, "cannot be set for a scheduler"),
        ({"every": 1000, "job_opts": {"attempts": 0}}, "attempts=0 is invalid"),
        ({"every": 1000, "job_name": ""}, "job_name='' is invalid"),
    ],
)
async def test_bad_definitions_are_refused_before_anything_is_written(
    queue: Queue, redis: aioredis.Redis, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidJobOptions, match=message):
        await queue.upsert_job_scheduler("bad", **kwargs)
    assert [k async for k in redis.scan_iter(match=queue.keys.base + ":*")] == []


@pytest.mark.parametrize("scheduler_id", ["", "a:b", " lead", "{x}", "x" * 201, 7])
async def test_bad_scheduler_ids_are_refused(queue: Queue, scheduler_id: Any) -> None:
    with pytest.raises(InvalidJobOptions, match="scheduler_id"):
        await queue.upsert_job_scheduler(scheduler_id, every=1000)


async def test_custom_job_ids_cannot_take_a_tick_id(queue: Queue) -> None:
    with pytest.raises(InvalidJobOptions, match="reserved for the jobs of job schedulers"):
        await queue.add("x", job_id="repeat-sync-1795461234027")


# ---- the scripts directly ----------------------------------------------------------------


async def test_a_taken_tick_id_moves_the_first_job_to_the_following_tick(queue: Queue) -> None:
    start = 10**13
    squatter = tick_job_id("busy", start)
    reply = await commands.add_job(
        queue.scripts, queue.keys, job_id=squatter, name="other", data="1", opts="{}",
        delay=0, priority=0, lifo=False, attempts=1, max_events=10_000,
    )  # fmt: skip
    assert commands.parse_add(reply).state == "wait"
    scheduler = await queue.upsert_job_scheduler("busy", every=1000, start_date=start)
    assert scheduler.next_run == start + 1000
    assert scheduler.last_job_id == tick_job_id("busy", start + 1000)
    other = await queue.get_job(squatter)
    assert other is not None and other.name == "other"  # left alone


async def test_schedule_next_job_ignores_a_tick_computed_from_an_old_timing(queue: Queue) -> None:
    scheduler = await queue.upsert_job_scheduler("t", every=60_000)
    job_id = await take_one(queue)
    assert job_id == scheduler.last_job_id
    done = await commands.schedule_next_job(
        queue.scripts, queue.keys, "t", tick_prefix="repeat-t-", taken_job_id=job_id,
        timing_fingerprint="not-the-current-one", next_tick=(scheduler.next_run or 0) + 5,
    )  # fmt: skip
    assert done.status == "stale"
    assert await queue.get_counts("delayed") == {"delayed": 0}
    after = await queue.get_job_scheduler("t")
    assert after is not None and after.iterations == 1


async def test_schedule_next_job_ends_the_scheduler_without_a_next_tick(queue: Queue) -> None:
    scheduler = await queue.upsert_job_scheduler("t", every=60_000)
    job_id = await take_one(queue)
    stored = await queue.client.hget(queue.keys.scheduler("t"), "timing")
    done = await commands.schedule_next_job(
        queue.scripts, queue.keys, "t", tick_prefix="repeat-t-", taken_job_id=job_id,
        timing_fingerprint=str(stored), next_tick=-1,
    )  # fmt: skip
    assert done.status == "ended"
    after = await queue.get_job_scheduler("t")
    assert after is not None
    assert (after.ended, after.last_job_id) == (True, scheduler.last_job_id)
    assert await queue.client.zscore(queue.keys.schedulers, "t") == float("inf")


def test_ticks_before_a_tick_on_the_same_grid() -> None:
    every = Timing.build(every=1_000, start_date=10_000)
    assert every.ticks_before(14_000, 3) == [13_000, 12_000, 11_000]
    assert every.ticks_before(11_000, 3) == [10_000]  # none before the start date
    paris = ZoneInfo("Europe/Paris")
    nine = int(datetime(2025, 3, 31, 9, 0, tzinfo=paris).timestamp() * 1000)
    cron = Timing.build(pattern="0 9 * * *", tz="Europe/Paris")
    earlier = [datetime.fromtimestamp(t / 1000, paris) for t in cron.ticks_before(nine, 2)]
    # 09:00 in Paris on each day, across the switch to summer time on 30 March
    assert [(d.day, d.hour, d.minute) for d in earlier] == [(30, 9, 0), (29, 9, 0)]
