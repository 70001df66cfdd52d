"""The stalled & stuck screen at 80x24 against a real server: the threshold the operator sets
(T, checked; --stuck-after), stuck rows marked in words, real stalled events listed with job
and time, and queues with waiting jobs and no live worker."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, until, visible_text
from textual.pilot import Pilot
from textual.widgets import Input
from workload import take_jobs

from corral.cli import main
from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.stalled import StalledScreen
from engine import commands
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)


def _app(url: str, *queues: str) -> DashboardApp:
    return DashboardApp(url, CorralBackend(), queues=queues, poll_interval=0.2)


async def _open_stalled(app: DashboardApp, pilot: Pilot[None], queue: str) -> StalledScreen:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(queue) is not None)
    await pilot.press("s")
    await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
    screen = app.screen
    assert isinstance(screen, StalledScreen)
    return screen


async def test_the_stuck_threshold_is_set_checked_and_marks_rows(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        for i in range(2):
            await queue.add("slow", {"i": i})
        running = await take_jobs(queue, 2, 60_000)
        app = _app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await _open_stalled(app, pilot, queue_name)
            await pilot.pause(0.2)
            text = visible_text(app)
            assert "stuck: active longer than 5 minutes" in text
            assert "2 active, 0 without lock" in text
            assert "STUCK" not in text
            await pilot.press("T")
            await until(pilot, lambda: isinstance(app.screen, PromptScreen))
            prompt = app.screen.query_one(Input)
            for bad, why in (("0", "expected at least 1s"), ("soon", "is invalid")):
                prompt.value = bad
                await pilot.press("enter")
                await pilot.pause(0.1)
                assert why in visible_text(app)
                assert isinstance(app.screen, PromptScreen)  # nothing changed
            assert app.stuck_after_ms == 5 * 60_000
            prompt.value = "1s"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, StalledScreen))
            assert app.stuck_after_ms == 1_000
            await asyncio.sleep(1.2)  # both jobs have now run longer than 1 s
            await until(pilot, lambda: visible_text(app).count("⏱ STUCK") == 2)
            assert "stuck: active longer than 1 second" in visible_text(app)
        assert await queue.get_job_state(running[0]) == "active"  # only shown, never touched


async def test_stalled_events_and_queues_without_workers_are_listed(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    idle = queue_name + "-idle"
    async with Queue(queue_name, redis_url) as queue, Queue(idle, redis_url) as other:
        for i in range(3):
            await other.add("waits", {"i": i})
        for i in range(2):
            await queue.add("lost", {"i": i})
        # a worker of each queue that died: its heartbeat expired a minute ago
        for name in (queue_name, idle):
            await redis.zadd(QueueKeys(name).workers, {"gone-worker": time.time() * 1000 - 60_000})
        app = _app(redis_url, queue_name, idle)
        async with app.run_test(size=SIZE) as pilot:
            await _open_stalled(app, pilot, queue_name)
            await pilot.pause(0.2)
            text = visible_text(app)
            assert "no stalled events since the dashboard started" in text
            assert f"no live worker: {queue_name} (2 waiting), {idle} (3 waiting)" in text
            # two jobs whose worker vanished: their locks expire and the engine's check recovers
            lost = await take_jobs(queue, 2, 100)
            keys = QueueKeys(queue_name)
            async with asyncio.timeout(20):
                while (await queue.get_counts("active"))["active"]:
                    await asyncio.sleep(0.15)
                    await commands.recover_stalled(queue.scripts, keys, 5, 10)
            await until(pilot, lambda: "2 stalled events" in visible_text(app))
            text = visible_text(app)
            for job_id in lost:
                assert f"job {job_id}  queue {queue_name}" in text
            assert all([await queue.get_job_state(j) == "wait" for j in lost])
            assert f"{queue_name} (2 waiting)" in text  # back in wait, still no worker


def test_stuck_after_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    url = "redis://127.0.0.1:1/0"
    assert main(["dash", "--redis", url, "--stuck-after", "90s"]) == 0
    assert started[0].stuck_after_ms == 90_000
    assert main(["dash", "--redis", url]) == 0
    assert started[1].stuck_after_ms == 5 * 60_000
    assert main(["dash", "--redis", url, "--stuck-after", "0"]) == 2
    assert "--stuck-after" in capsys.readouterr().err
