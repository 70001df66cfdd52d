"""What the tables and the job screen show beside the counts, at 80x24 against a real server
and real workers: the progress column, the chart following the selected queue, the overview's
help about the wait column, and exact timestamps beside humanized ones."""

from __future__ import annotations

import json
import time

import pytest
from pilot import SIZE, until, visible_text
from support.workers import running_worker, wait_until
from textual.widgets import Static
from workload import finish_jobs

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.format import exact_time
from dashboard.widgets.throughput_chart import ThroughputChart
from engine import Job, Queue, commands

pytestmark = pytest.mark.timeout(60)


def _app(url: str, *queues: str) -> DashboardApp:
    return DashboardApp(url, CorralBackend(), queues=queues, poll_interval=0.2)


async def _fails(job: Job) -> str:
    raise ValueError("asked to fail")


async def test_active_jobs_show_their_progress(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        for i in range(3):
            await queue.add("upload", {"i": i}, job_id=f"up-{i}")
        lease = commands.Lease("test-token", 60_000, "test-worker", 3)
        taken = await commands.move_to_active(queue.scripts, queue.keys, lease)
        tokens = {job.id: job.token for job in taken.jobs}
        # the worker reports progress through the engine's fenced script
        reports = {"up-0": "42", "up-1": json.dumps({"rows": 10})}
        for job_id, progress in reports.items():
            await commands.update_progress(
                queue.scripts, queue.keys, job_id, tokens[job_id], progress
            )
        app = _app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await pilot.press("2")  # active tab
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 3)
            await pilot.pause(0.1)
            lines = visible_text(app).splitlines()
            assert "prog" in next(line for line in lines if " tries " in line)
            rows = {line.split()[0]: line for line in lines if line.strip().startswith("up-")}
            assert "42%" in rows["up-0"] and "{…}" in rows["up-1"]
            assert rows["up-2"].split()[-1] == "-"  # no progress reported
            assert all(len(line) <= 80 for line in lines)
        job = await queue.get_job("up-0")
        assert job is not None and job.progress == 42


async def test_the_chart_follows_the_selected_queue(redis_url: str, queue_name: str) -> None:
    busy, quiet = queue_name[-8:] + "-a", queue_name[-8:] + "-b"  # short: the title has room
    async with Queue(busy, redis_url) as queue:
        for i in range(4):
            await queue.add("work", {"i": i}, attempts=1)
        async with running_worker(busy, _fails, redis_url, concurrency=2):

            async def all_failed() -> bool:
                return (await queue.get_counts("failed"))["failed"] == 4

            await wait_until(all_failed)
    async with Queue(quiet, redis_url) as other:
        await other.add("work", {})
        await finish_jobs(other, complete=1, fail=0)
    app = _app(redis_url, busy, quiet)
    async with app.run_test(size=SIZE) as pilot:

        def hour_read() -> bool:
            snapshot = app.snapshot
            return snapshot is not None and sum(snapshot.hour_failed) == 4

        await until(pilot, hour_read)
        await pilot.pause(0.3)
        chart = app.screen.query_one(ThroughputChart)
        assert f"{busy}: last hour" in visible_text(app)  # the first row is selected
        assert app.snapshot is not None
        busy_row = app.snapshot.queue(busy)
        quiet_row = app.snapshot.queue(quiet)
        assert busy_row is not None and quiet_row is not None
        assert sum(busy_row.hour_failed) == 4 and sum(quiet_row.hour_failed) == 0
        assert sum(quiet_row.hour_completed) == 1
        await pilot.press("j")
        await until(pilot, lambda: f"{quiet}: last hour" in visible_text(app))
        await pilot.press("a")
        await until(pilot, lambda: "all: last hour" in visible_text(app))
        assert chart.is_mounted
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert "wait counts the jobs ready to run: wait + prioritized" in text
        # the key list scrolls at 80x24: read all of it
        listed = str(app.screen.query_one("#help-box Static", Static).content)
        assert "Chart: this queue / all" in listed


async def test_the_job_screen_gives_exact_times_beside_humanized_ones(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("send", {}, job_id="timed")
        await finish_jobs(queue, complete=0, fail=1)
        job = await queue.get_job("timed")
        assert job is not None and job.processed_on is not None and job.finished_on is not None
        app = _app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            app.open_job(queue_name, "timed")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await until(pilot, lambda: screen.detail is not None)
            await pilot.pause(0.1)
            text = visible_text(app)
            for label, ms in (
                ("created", job.timestamp),
                ("processed", job.processed_on),
                ("finished", job.finished_on),
            ):
                line = next(line for line in text.splitlines() if line.strip().startswith(label))
                assert "ago" in line and exact_time(ms) in line
    assert exact_time(0).startswith(time.strftime("%Y-%m-%d", time.localtime(0)))
