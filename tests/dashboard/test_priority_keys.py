"""``o`` changes a job's priority (asked, checked, confirmed) and ``A`` promotes every delayed
job of a queue (typed confirmation), on Corral queues at 80x24."""

from __future__ import annotations

import pytest
from pilot import SIZE, make_app, notices, until, visible_text
from textual.widgets import Button, Input

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from engine import Queue

pytestmark = pytest.mark.timeout(60)


async def test_o_gives_a_waiting_job_a_new_priority(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        low = await queue.add("low", {}, priority=5)
        await queue.add("other", {}, priority=3)
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter", "4")  # the queue, its prioritized tab
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
            await pilot.press("j")  # the second row runs last: priority 5
            assert screen.selected_job() == low.id
            await pilot.press("o")
            await until(pilot, lambda: isinstance(app.screen, PromptScreen))
            app.screen.query_one(Input).value = "first"
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert "priority 'first' is invalid" in visible_text(app)
            app.screen.query_one(Input).value = "1"
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert f"Give job {low.id} of queue" in visible_text(app)
            await pilot.pause(0.4)
            await pilot.press("tab", "enter")
            await until(pilot, lambda: f"job {low.id!r} now has priority 1" in notices(app))
            await until(pilot, lambda: screen.page is not None and screen.page.rows[0].id == low.id)
        job = await queue.get_job(low.id)
        assert job is not None and job.priority == 1


async def test_o_on_a_finished_job_says_it_moved_on(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("x", {})
        await queue.remove_job(job.id)
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            app.open_job(queue_name, job.id)
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            await pilot.press("o")
            await until(pilot, lambda: isinstance(app.screen, PromptScreen))
            await pilot.press("enter")  # the default, 1
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.4)
            await pilot.press("tab", "enter")
            await until(pilot, lambda: "not reprioritized" in notices(app))
            assert f"job {job.id!r} no longer exists" in notices(app)


async def test_capital_a_promotes_every_delayed_job(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        for i in range(3):
            await queue.add("later", {"i": i}, delay=600_000)
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            await pilot.press("A")  # the delayed jobs are read now, whatever the counts shown
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert "Promote these 3 delayed jobs" in visible_text(app)
            await pilot.pause(0.4)
            app.screen.query_one(Input).value = queue_name
            await pilot.pause(0.05)
            app.screen.query_one("#confirm", Button).press()
            await until(pilot, lambda: f"promoted 3 delayed jobs of {queue_name!r}" in notices(app))
        counts = await queue.get_counts("delayed", "wait")
        assert (counts["delayed"], counts["wait"]) == (0, 3)


async def test_read_only_hides_both_keys(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("later", {}, delay=600_000, priority=4)
        app = make_app(redis_url, queue_name, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter", "3")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            await pilot.press("A", "o")
            await pilot.pause(0.3)
            assert isinstance(app.screen, QueueScreen)
        found = await queue.get_job(job.id)
        assert found is not None and found.priority == 4
        assert await queue.get_job_state(job.id) == "delayed"
