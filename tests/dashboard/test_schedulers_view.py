"""The schedulers view at 80x24: timing, zone, next run (relative and exact), runs and the
last job's state, against schedulers a real worker has run; enter opens the last job."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis
from croniter import croniter
from pilot import SIZE, make_app, until, visible_text
from support.workers import running_worker, wait_until

from dashboard.corral_backend import CorralBackend
from dashboard.screens.job import JobScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.widgets.schedulers_table import SchedulersTable
from engine import Job, Queue
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)

PARIS = "Europe/Paris"


async def _noop(job: Job) -> str:
    return "ran"


def _row(text: str, word: str) -> list[str]:
    for line in text.splitlines():
        if line.split() and line.split()[0] == word:
            return line.split()
    raise AssertionError(f"no row for {word!r}:\n{text}")


async def test_schedulers_with_next_runs_and_last_jobs(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.upsert_job_scheduler("morning", pattern="0 9 * * *", tz=PARIS)
        later = int(time.time() * 1000) + 2 * 3_600_000
        await queue.upsert_job_scheduler("hourly", every=3_600_000, start_date=later)
        once = await queue.upsert_job_scheduler("once", every=1_000, limit=1, job_name="ping")
        async with running_worker(queue_name, _noop, redis_url):

            async def ran() -> bool:
                return await queue.get_job_state(once.last_job_id or "") == "completed"

            await wait_until(ran)
        assert (await queue.get_job_scheduler("once")).ended  # type: ignore[union-attr]
        morning = await queue.get_job_scheduler("morning")
    assert morning is not None and morning.next_run is not None
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("S")
        await until(
            pilot, lambda: isinstance(app.screen, SchedulersScreen) and app.screen.page is not None
        )
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "1-3 of 3" in text
        assert _row(text, "morning")[1:8] == ["0", "9", "*", "*", "*", PARIS, "in"]
        assert _row(text, "morning")[-2:] == ["1", "delayed"]
        assert _row(text, "hourly")[1:6] == ["every", "1h", "UTC", "in", "1h"]
        assert _row(text, "hourly")[-2:] == ["1", "delayed"]
        assert _row(text, "once")[1:] == ["every", "1s", "UTC", "ended", "1", "completed"]
        # the highlighted scheduler in full: the exact next run in its own zone
        table = app.screen.query_one(SchedulersTable)
        while table.selected is None or table.selected.id != "morning":
            await pilot.press("j")
        await pilot.pause(0.1)
        nine = datetime.fromtimestamp(morning.next_run / 1000, ZoneInfo(PARIS))
        assert (nine.hour, nine.minute) == (9, 0)
        assert f"next {nine:%Y-%m-%d} 09:00:00 {PARIS}" in visible_text(app)
        assert croniter.match("0 9 * * *", nine)
        # enter opens the last job the scheduler made
        while table.selected is None or table.selected.id != "once":
            await pilot.press("j")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        assert job_screen.job_id == once.last_job_id
        await until(pilot, lambda: job_screen.detail is not None)
        await pilot.pause(0.1)
        assert "ping" in visible_text(app) and "[completed]" in visible_text(app)


async def test_an_unreadable_scheduler_is_a_row_not_a_crash(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.upsert_job_scheduler("fine", every=60_000)
    keys = QueueKeys(queue_name)
    await redis.hset(keys.scheduler("broken"), mapping={"every": "soon", "iterations": "x"})
    await redis.zadd(keys.schedulers, {"broken": 1})
    page = await CorralBackend().read_schedulers(redis, queue_name, 0, 50)
    assert [(row.id, row.malformed is not None) for row in page.rows] == [
        ("broken", True),
        ("fine", False),
    ]
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        app.push_screen(SchedulersScreen(queue_name))
        await until(
            pilot, lambda: isinstance(app.screen, SchedulersScreen) and app.screen.page is not None
        )
        await pilot.pause(0.1)
        text = visible_text(app)
        assert _row(text, "broken")[1] == "unreadable"
        assert "unreadable record: ValueError" in text  # the cursor is on it: described in full
        assert _row(text, "fine")[1:3] == ["every", "1m"]


async def test_the_jobs_of_earlier_ticks_with_their_states(redis_url: str, queue_name: str) -> None:
    """A scheduler a real worker ran several times (every second job failing): the highlighted
    scheduler lists the states of the jobs before its last one, newest first."""
    runs = 0

    async def flaky(job: Job) -> str:
        nonlocal runs
        runs += 1
        if runs % 2 == 0:
            raise RuntimeError("flaky upstream")
        return "ran"

    async with Queue(queue_name, redis_url) as queue:
        await queue.upsert_job_scheduler("pulse", every=250, limit=5, job_name="beat")
        async with running_worker(queue_name, flaky, redis_url):

            async def five_finished() -> bool:
                counts = await queue.get_counts("completed", "failed")
                return counts["completed"] + counts["failed"] == 5

            await wait_until(five_finished, within=30)
        pulse = await queue.get_job_scheduler("pulse")
        assert pulse is not None and pulse.last_job_id is not None
        tick = int(pulse.last_job_id.rsplit("-", 1)[1])
        before = [f"{pulse.last_job_id.rsplit('-', 1)[0]}-{tick - k * 250}" for k in range(1, 5)]
        states = [str(await queue.get_job_state(job_id)) for job_id in before]
        assert sorted(states) == ["completed", "completed", "failed", "failed"]
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("S")
        await until(
            pilot, lambda: isinstance(app.screen, SchedulersScreen) and app.screen.page is not None
        )
        await pilot.pause(0.1)
        text = " ".join(visible_text(app).split())  # the detail wraps over two lines
        assert "before: " + " ".join(states) + " " in text + " "  # 4: it made 5 jobs in all
        assert "gone" not in text
