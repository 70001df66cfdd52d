"""Hostile strings (markup, terminal control, bidi) written into flow, worker and scheduler
records by something other than the engine render as inert, visible text in the new views
(RELIABILITY.md 3.5), and each view's keys are in its help."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, until, visible_text
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.screens.flow import FlowScreen
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.workers import WorkersScreen
from engine import FlowProducer, Queue
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)

HOSTILE = "[b]x[/]\x1b[2J\u202e"


def _inert(app: DashboardApp) -> str:
    text = visible_text(app)
    assert "\x1b" not in text and "\u202e" not in text
    assert "[b]x[/]" in text  # shown as typed, not taken as markup
    assert "␛[2J" in text or "␛[…" in text or "␛…" in text
    return text


async def _help_lists(app: DashboardApp, pilot: Pilot[None], *labels: str) -> None:
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen))
    await pilot.pause(0.1)
    text = visible_text(app)
    for label in labels:
        assert label in text
    await pilot.press("escape")
    await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_flow_views_with_hostile_names(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "parent",
                "queue": queue_name,
                "children": [{"name": "c", "queue": queue_name}],
            }
        )
    child = root.children[0].ref.id
    await redis.hset(QueueKeys(queue_name).job(child), "name", HOSTILE)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        app.open_job(queue_name, root.ref.id)
        await until(
            pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.links is not None
        )
        await pilot.pause(0.1)
        _inert(app)
        await _help_lists(app, pilot, "Flow", "Open parent", "Open linked job")
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, FlowScreen) and app.screen.loaded)
        await pilot.pause(0.1)
        _inert(app)
        await _help_lists(app, pilot, "Open job", "Expand")


async def test_workers_and_schedulers_with_hostile_records(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    now = int(time.time() * 1000)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("waits", {})
        await queue.upsert_job_scheduler("fine", every=60_000, job_name="tick")
    await redis.hset(
        keys.worker("w1"),
        mapping={"host": HOSTILE, "pid": 1, "concurrency": 1, "in_flight": 0,
                 "started": now, "last_beat": now},
    )  # fmt: skip
    await redis.pexpire(keys.worker("w1"), 60_000)
    await redis.zadd(keys.workers, {"w1": now + 60_000})
    await redis.hset(keys.scheduler("fine"), "name", HOSTILE)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen) and bool(app.screen.live))
        await pilot.pause(0.1)
        _inert(app)
        await _help_lists(app, pilot, "All queues / this one")
        await pilot.press("escape")
        await pilot.press("S")
        await until(
            pilot,
            lambda: isinstance(app.screen, SchedulersScreen) and app.screen.page is not None,
        )
        await pilot.pause(0.1)
        _inert(app)  # the job name, in the highlighted scheduler's line
        await _help_lists(app, pilot, "Open last job", "Next page")


async def test_dead_letters_with_hostile_fields(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    """A dead letter whose name, origin queue and reason were written by something else."""
    keys = QueueKeys(queue_name)
    now = int(time.time() * 1000)
    await redis.hset(keys.meta, mapping={"version": "1", "dead_letter": "1"})
    await redis.hset(
        keys.job("1"),
        mapping={
            "name": HOSTILE,
            "data": "null",
            "opts": "{}",
            "timestamp": now,
            "finished_on": now,
            "attempts_made": 3,
            "failed_reason": HOSTILE,
            "origin_queue": HOSTILE,
            "origin_id": "7",
        },
    )
    await redis.zadd(keys.failed, {"1": now})
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("D")
        await until(pilot, lambda: "dead letters of" in visible_text(app))
        await until(pilot, lambda: "1 dead letter:" in visible_text(app))
        await pilot.pause(0.1)
        _inert(app)
        await _help_lists(app, pilot, "Mark", "Replay", "Replay all")
