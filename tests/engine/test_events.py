"""``QueueEvents``: typed events read back from a queue's stream, resumable, with gaps reported."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from engine.events import EVENT_NAMES, Event, QueueEvents
from engine.queue import Queue
from engine.scripts import SCRIPT_NAMES, script_source


@pytest.fixture
async def queue(queue_name: str, redis_url: str) -> AsyncIterator[Queue]:
    async with Queue(queue_name, redis_url) as q:
        yield q


def reader(queue: Queue, redis_url: str, last_id: str = "0", batch: int = 500) -> QueueEvents:
    return QueueEvents(queue.name, redis_url, last_id=last_id, block_ms=100, batch=batch)


def summary(events: list[Event]) -> list[tuple[str, str | None]]:
    return [(e.event, e.job_id) for e in events]


async def test_add_yields_typed_events_in_order(queue: Queue, redis_url: str) -> None:
    events = reader(queue, redis_url)
    try:
        before = int(time.time() * 1000)
        job = await queue.add("email", {"to": "x"})
        delayed = await queue.add("later", delay=60_000)

        got = await events.read()
    finally:
        await events.close()

    assert summary(got) == [
        ("added", job.id),
        ("waiting", job.id),
        ("added", delayed.id),
        ("delayed", delayed.id),
    ]
    assert all(isinstance(e, Event) and e.queue == queue.name for e in got)
    assert got[0].fields == {"name": "email"}
    assert got[1].fields == {}
    assert int(got[3].fields["delay"]) >= got[3].timestamp_ms + 60_000 - 5
    assert abs(got[0].timestamp_ms - before) < 5_000
    ids = [e.id for e in got]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert events.last_id == got[-1].id


async def test_async_iteration_yields_events_as_they_happen(queue: Queue, redis_url: str) -> None:
    events = reader(queue, redis_url)
    seen: list[Event] = []

    async def collect() -> None:
        async for event in events:
            seen.append(event)
            if event.event == "resumed":
                return

    task = asyncio.create_task(collect())
    try:
        job = await queue.add("a")
        await queue.pause()
        await queue.resume()
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
        await events.close()

    assert summary(seen) == [
        ("added", job.id),
        ("waiting", job.id),
        ("paused", None),
        ("resumed", None),
    ]


async def test_dollar_reads_only_new_events(queue: Queue, redis_url: str) -> None:
    await queue.add("old")
    events = reader(queue, redis_url, last_id="$")
    try:
        assert await events.read() == []
        new = await queue.add("new")
        got = await events.read()
    finally:
        await events.close()
    assert summary(got) == [("added", new.id), ("waiting", new.id)]


async def test_a_new_reader_resumes_from_a_given_id(queue: Queue, redis_url: str) -> None:
    first = reader(queue, redis_url)
    try:
        for name in ("a", "b", "c"):
            await queue.add(name)
        everything = await first.read()
    finally:
        await first.close()
    assert len(everything) == 6

    resumed = reader(queue, redis_url, last_id=everything[1].id)
    try:
        rest = await resumed.read()
        assert await resumed.read() == []
    finally:
        await resumed.close()

    assert [e.id for e in rest] == [e.id for e in everything[2:]]
    assert "gap" not in [e.event for e in rest]


async def test_gap_is_reported_when_the_stream_was_trimmed(
    redis: aioredis.Redis, queue: Queue, redis_url: str
) -> None:
    events = reader(queue, redis_url, batch=1)
    try:
        first = await queue.add("first")
        (seen,) = await events.read()
        assert (seen.event, seen.job_id) == ("added", first.id)
        await redis.xtrim(queue.keys.events, maxlen=0)  # the unread "waiting" is gone
        second = await queue.add("second")

        got = await events.read()
        more = await events.read()
    finally:
        await events.close()

    gap, added = got
    assert gap.event == "gap"
    assert gap.id == seen.id  # where the reader was
    assert gap.job_id is None
    assert tuple(map(int, gap.fields["trimmed_to"].split("-"))) > tuple(
        map(int, seen.id.split("-"))
    )
    assert (added.event, added.job_id) == ("added", second.id)
    assert summary(more) == [("waiting", second.id)]  # one gap, not one per read


async def test_gap_is_reported_once_when_nothing_new_follows(
    redis: aioredis.Redis, queue: Queue, redis_url: str
) -> None:
    events = reader(queue, redis_url, batch=1)
    try:
        await queue.add("only")
        await events.read()
        await redis.xtrim(queue.keys.events, maxlen=0)

        reads = [await events.read() for _ in range(3)]
        later = await queue.add("later")
        after = await events.read()
    finally:
        await events.close()

    assert [[e.event for e in batch] for batch in reads] == [["gap"], [], []]
    assert summary(after) == [("added", later.id)]


async def test_gap_from_the_stream_cap(queue_name: str, redis_url: str) -> None:
    async with Queue(queue_name, redis_url, max_events=100) as queue:
        events = reader(queue, redis_url, batch=1)
        try:
            await queue.add("first")
            (seen,) = await events.read()
            await queue.add_bulk([("bulk", i) for i in range(300)])  # 600 events, cap ~100
            got = await events.read()
        finally:
            await events.close()
        # a reader whose position is still kept sees no gap, though older entries are gone
        behind = reader(queue, redis_url, last_id=got[1].id)
        try:
            rest = await behind.read()
        finally:
            await behind.close()

    assert got[0].event == "gap"
    assert got[0].id == seen.id
    assert got[1].event in ("added", "waiting")
    assert rest
    assert "gap" not in [e.event for e in rest]


def test_every_event_a_script_emits_is_known() -> None:
    emitted: set[str] = set()
    for name in SCRIPT_NAMES:
        emitted |= set(re.findall(r"emit\([^,]+,[^,]+,\s*'(\w+)'", script_source(name)))
    assert emitted
    assert emitted <= EVENT_NAMES
