"""``x`` cancels a running job from the dashboard: confirmed, carried out by its worker."""

from __future__ import annotations

import asyncio

import pytest
from pilot import SIZE, make_app, notices, until
from support.workers import running_worker, wait_until
from textual.widgets import Button

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen
from engine import Job, Queue

pytestmark = pytest.mark.timeout(60)


async def test_x_cancels_a_running_job_through_its_worker(redis_url: str, queue_name: str) -> None:
    started = asyncio.Event()

    async def process(job: Job) -> None:
        started.set()
        await asyncio.sleep(60)  # until cancelled

    async with (
        Queue(queue_name, redis_url) as queue,
        running_worker(queue_name, process, redis_url),
    ):
        job = await queue.add("long", {})
        await asyncio.wait_for(started.wait(), 10)
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter", "2")  # the queue, its active tab
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.4)  # past the debounce
            app.screen.query_one("#confirm", Button).press()
            await until(pilot, lambda: "cancel of running job" in notices(app))

        async def failed() -> bool:
            return await queue.get_job_state(job.id) == "failed"

        await wait_until(failed, within=10)
        done = await queue.get_job(job.id)
        assert done is not None and done.failed_reason is not None
        assert done.failed_reason.startswith("cancelled by ")
        assert done.failed_reason.endswith("(dashboard)")
