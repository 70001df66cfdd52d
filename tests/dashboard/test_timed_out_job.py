"""A job that a real ``corral worker`` process timed out, seen in the dashboard at 80x24: the
queue's failed tab and the job screen give "timed out after ..." as its reason, and the failed
tab's columns are not left cut when the table is painted before its new rows are measured."""

from __future__ import annotations

import asyncio
import signal

import pytest
from pilot import SIZE, make_app, open_first_failed, until, visible_text
from support.workers import WorkerProcess, wait_until
from textual.app import App, ComposeResult

from dashboard.model import JobPage, JobRow
from dashboard.screens.job import JobScreen
from dashboard.widgets.job_table import JobTable
from engine import JobState, Queue

pytestmark = pytest.mark.timeout(90)

REASON = "timed out after 0.3 s"


async def test_a_timed_out_job_shows_its_timeout_in_the_failed_tab_and_the_job_screen(
    redis_url: str, queue_name: str, procs: list[WorkerProcess]
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        added = await queue.add("import", {"sleep": 30}, attempts=1, timeout_ms=300)
        worker = WorkerProcess("support.sandbox_jobs:async_job", queue_name, redis_url)
        procs.append(worker)

        async def failed() -> bool:
            return await queue.get_job_state(added.id) is JobState.FAILED

        await wait_until(failed, within=30)
        job = await queue.get_job(added.id)
        assert job is not None and (job.attempts_made, job.failed_reason) == (1, REASON)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0

    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue_name)
        table = screen.query_one(JobTable)
        await until(pilot, lambda: table.row_count == 1)
        try:
            await until(pilot, lambda: REASON in visible_text(app))
        except TimeoutError:
            print("SCREEN\n" + visible_text(app))
            print("ROWS", table.shown_rows)
            raise
        (row,) = [line for line in visible_text(app).splitlines() if REASON in line]
        assert added.id in row and "import" in row

        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await until(pilot, lambda: "failed reason" in visible_text(app))
        text = visible_text(app)
        assert REASON in text
        assert job_screen.detail is not None and job_screen.detail.failed_reason == REASON


class OneTable(App[None]):
    """A failed tab's job table, as tall as the screen lets it be (so it is never resized)."""

    CSS = "JobTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield JobTable()


async def test_rows_painted_before_they_are_measured_are_repainted_at_their_widths() -> None:
    """On a busy machine the table can be painted between adding a row and measuring it (on
    idle); those first cells, cut to the column labels' widths ("impo", "time"), must not stay
    on screen once the columns have grown."""
    app = OneTable()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(JobTable)
        await pilot.pause()
        row = JobRow("1", "failed", "import", attempts_made=1, failed_reason=REASON)
        table.show(JobPage("q", "failed", 0, (row,), 1))
        table.render_line(1)  # the paint that comes first
        await until(pilot, lambda: table.ordered_columns[1].content_width > 4)  # name measured
        await pilot.pause()
        line = table.render_line(1).text
        assert "import" in line and REASON in line
