"""The queue and job screens at 80x24: the filter, the reason column's width, and job keys that
appear only where they apply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from pilot import SIZE, make_app, notices, open_first_failed, until, visible_text
from textual.widgets import Button, Input
from workload import KEEP_ALL

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.job_table import JobTable
from engine import commands
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

LONG_REASON = "ConnectionError: " + "upstream said no " * 20
REASONS = ["TimeoutError: gateway slow", LONG_REASON, "TimeoutError: db slow", "KeyError: 'sku'"]


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """Four failed jobs with different reasons, and one delayed job."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(len(REASONS)):
            await q.add("charge", {"i": i})
        await q.add("later", {}, delay=3_600_000)
        lease = commands.Lease("t", 30_000, "test-worker", len(REASONS))
        taken = await commands.move_to_active(q.scripts, q.keys, lease)
        for job, reason in zip(taken.jobs, REASONS, strict=True):
            await commands.fail_job(
                q.scripts, q.keys, job.id, job.token, reason, json.dumps([]), -1, KEEP_ALL
            )
        yield q


def footer_line(text: str) -> str:
    return text.splitlines()[-1]


async def test_filter_narrows_the_page_and_escape_clears_it(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        table = screen.query_one(JobTable)
        await until(pilot, lambda: len(table.shown_rows) == len(REASONS))
        await pilot.press("slash", *"timeout")
        await until(pilot, lambda: len(table.shown_rows) == 2)
        assert {row.failed_reason for row in table.shown_rows} == {REASONS[0], REASONS[2]}
        assert table.row_count == 2
        assert "2 match timeout" in visible_text(app)
        await pilot.press("enter")  # keep the filter, back on the table
        assert app.focused is table
        await pilot.press("q")  # a key for the screen again, not text for the filter
        await until(pilot, lambda: not isinstance(app.screen, QueueScreen))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        again = app.screen
        assert isinstance(again, QueueScreen)
        await pilot.press("5", "slash", *"nothing-like-it")
        table = again.query_one(JobTable)
        await until(pilot, lambda: table.row_count == 0)
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == len(REASONS))
        assert table.filter_text == ""
        assert app.focused is table


async def test_long_reasons_are_cut_to_fit_80_columns(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        table = screen.query_one(JobTable)
        await until(pilot, lambda: table.row_count == len(REASONS))

        def reason_rows() -> list[str]:
            return [line for line in visible_text(app).splitlines() if "ConnectionError" in line]

        await until(pilot, lambda: len(reason_rows()) == 1)  # painted, on a busy machine too
        assert table.virtual_size.width <= table.size.width  # no sideways scrolling
        rows = reason_rows()
        assert rows[0].rstrip().endswith("…")
        assert "more chars" not in rows[0]


async def test_job_keys_appear_only_where_they_apply(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_first_failed(pilot, app, queue.name)
        await pilot.pause(0.1)
        footer = footer_line(visible_text(app))
        assert "Retry" in footer and "Discard" in footer
        assert "Freeze" in footer  # the whole footer fits in 80 columns
        await pilot.press("P")  # promote means nothing for a failed job: nothing is asked
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)

        await pilot.press("3")  # delayed tab
        await until(pilot, lambda: screen.page is not None and screen.page.state == "delayed")
        await pilot.pause(0.1)
        footer = footer_line(visible_text(app))
        assert "Retry" not in footer and "Discard" in footer
        await pilot.press("r")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)

        await pilot.press("enter")  # the delayed job's own screen offers Promote, not Retry
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        await pilot.pause(0.1)
        footer = footer_line(visible_text(app))
        assert "Promote" in footer and "Retry" not in footer
        assert "Freeze" in footer  # everything fits in 80 columns now
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))


async def test_clean_asks_an_age_then_states_the_exact_count(queue: Queue, redis_url: str) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await open_first_failed(pilot, app, queue.name)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        box = app.screen.query_one(Input)
        assert box.value == "1h"
        await pilot.press("enter")  # nothing failed an hour ago: nothing to ask
        await until(pilot, lambda: "no failed jobs older than 1 hour" in notices(app))
        assert isinstance(app.screen, QueueScreen)

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        app.screen.query_one(Input).value = "ten minutes"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, PromptScreen)  # refused, and says why
        assert "age 'ten minutes' is invalid" in visible_text(app)
        app.screen.query_one(Input).value = "0"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert f"Remove {len(REASONS)} failed jobs" in visible_text(app)
        await pilot.pause(0.4)
        app.screen.query_one(Input).value = queue.name
        await pilot.pause(0.05)
        app.screen.query_one("#confirm", Button).press()
        await until(pilot, lambda: f"removed {len(REASONS)} failed jobs" in notices(app))
        assert (await queue.get_counts("failed"))["failed"] == 0
        assert (await queue.get_counts("delayed"))["delayed"] == 1
