"""The dashboard app at 80x24, driven by Pilot against a real server and engine workload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, open_first_failed, until, visible_text
from textual.widgets import Button, Input
from workload import finish_jobs, take_jobs

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.stalled import StalledScreen
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)


class Restartable(Protocol):
    """What these tests use of the ``fresh_server`` fixture."""

    @property
    def url(self) -> str: ...
    def kill(self) -> None: ...
    def restart(self) -> Any: ...


HOSTILE_NAME = "[bold red]x[/]\x1b[2J\u202e"


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """5 waiting, 3 completed and 2 failed jobs."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(10):
            await q.add("send", {"i": i, "password": "hunter2-secret"})
        await finish_jobs(q, complete=3, fail=2)
        yield q


async def test_overview_shows_queues_and_counts(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.1)
        assert isinstance(app.screen, OverviewScreen)
        text = visible_text(app)
        row = next(line for line in text.splitlines() if queue.name in line)
        assert row.split()[1:6] == ["5", "0", "0", "2", "3"]
        assert "POLLING" in text
        assert "127.0.0.1" in text


async def test_open_queue_then_job(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        assert screen.page is not None and len(screen.page.rows) == 2
        assert "boom" in visible_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "failed reason" in text and "boom" in text
        assert "hunter2-secret" not in text  # redacted
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))


async def test_retry_a_failed_job_after_confirming(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        job_id = screen.selected_job()
        assert job_id is not None
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.focused is app.screen.query_one("#cancel", Button)
        await pilot.press("enter")  # Cancel has the focus: nothing happens
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        assert await queue.get_job_state(job_id) == "failed"
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)  # past the debounce
        await pilot.press("tab", "enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
        assert await queue.get_job_state(job_id) == "wait"
        assert screen.page is not None
        assert job_id not in [row.id for row in screen.page.rows]


async def test_read_only_hides_and_refuses(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        job_id = screen.selected_job()
        assert job_id is not None
        text = visible_text(app)
        assert "READ-ONLY" in text
        assert "Retry" not in text and "Discard" not in text
        await pilot.press("r", "d", "R", "p")
        await pilot.pause(0.2)
        assert isinstance(app.screen, QueueScreen)
        await app.run_action("retry_all")  # even if reached another way, nothing is asked
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        assert await queue.get_job_state(job_id) == "failed"


async def test_hostile_strings_render_escaped(
    queue: Queue, redis_url: str, redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue.name)
    await redis.hset(keys.job("evil"), mapping={"name": HOSTILE_NAME, "data": "{bad json"})
    await redis.hset(keys.job("noname"), mapping={"data": "1"})
    await redis.lpush(keys.wait, "noname", "evil")
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and bool(screen.page.rows))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "[bold red]x[/]\u241b[2J<U+202E>" in text
        assert "\x1b" not in text and "\u202e" not in text
        assert "⚠ malformed" in text  # the job without a name
        screen.query_one("#jobs").move_cursor(row=0)  # type: ignore[attr-defined]
        assert screen.selected_job() == "evil"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "malformed job hash" in text
        assert "[bold red]x[/]" in text
        assert "<U+202E>" in text
        assert "{bad json" in text
        assert "\x1b" not in text


async def test_retry_all_needs_the_queue_name_typed(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Retry these 2 failed jobs" in visible_text(app)
        await pilot.pause(0.4)
        confirm = app.screen.query_one("#confirm", Button)
        assert confirm.disabled  # nothing typed yet
        app.screen.query_one("#confirm-input").focus()
        await pilot.press(*"wrong")
        await pilot.pause(0.05)
        assert confirm.disabled
        app.screen.query_one(Input).value = queue.name
        await pilot.pause(0.05)
        assert not confirm.disabled
        confirm.press()
        await until(pilot, lambda: "retried 2 failed jobs" in notices(app))
        await pilot.press("escape")  # the progress modal, showing the outcome
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        assert (await queue.get_counts("failed"))["failed"] == 0


async def test_palette_runs_the_same_actions(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("ctrl+p")
        await pilot.press(*"Freeze")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await until(pilot, lambda: app.frozen)
        await pilot.pause(0.1)
        assert "FROZEN" in visible_text(app)
        await pilot.press("f")
        await until(pilot, lambda: not app.frozen)


async def test_disconnect_banner_and_recovery(fresh_server: Restartable) -> None:
    async with Queue("jobs", fresh_server.url) as q:
        await q.add("send", {})
    app = make_app(fresh_server.url, "jobs")
    app.monitor.backoff_cap = 0.5
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        fresh_server.kill()
        await until(
            pilot, lambda: app.snapshot is not None and app.snapshot.mode.value == "DISCONNECTED"
        )
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "DISCONNECTED" in text and "data as of" in text
        assert "✖ connection closed by the server" in text or "✖ connection refused" in text
        assert "jobs" in text  # the last data stays on screen
        await pilot.press("enter")  # keys still work
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await pilot.press("escape")
        fresh_server.restart()
        await until(
            pilot, lambda: app.snapshot is not None and app.snapshot.mode.value == "POLLING"
        )
        assert "Traceback" not in visible_text(app)


async def test_stalled_view_flags_a_lost_lock(
    queue: Queue, redis_url: str, redis: aioredis.Redis
) -> None:
    (lost,) = await take_jobs(queue, 1, 60_000)
    await redis.delete(QueueKeys(queue.name).lock(lost))
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
        await pilot.pause(0.1)
        assert "GONE (stalled)" in visible_text(app)
