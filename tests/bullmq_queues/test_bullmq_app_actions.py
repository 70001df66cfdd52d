"""Pressing the dashboard's real keys at 80x24 on a queue Node BullMQ 6 runs: r retries a failed
job (the Node worker completes it), p pauses the queue (the Node worker stops taking jobs) and
p again resumes it; reading alone never constructs a ``bullmq`` package queue; p on a BullMQ 5
queue says on screen why it is not paused."""

from __future__ import annotations

import asyncio

import pytest
from support.bullmq_node import NodeDriver
from support.screen import SIZE, notices, until, visible_text
from support.workers import wait_until
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen

pytestmark = pytest.mark.timeout(120)


async def confirm(pilot: Pilot[None], app: DashboardApp) -> None:
    """Confirm the modal with the keyboard: past the debounce, tab to the button, enter."""
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.4)
    await pilot.press("tab", "enter")
    await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))


async def test_keys_retry_pause_and_resume_a_node_run_queue(
    node6: NodeDriver, redis_url: str, queue_name: str
) -> None:
    await node6.call("failing", on=True)
    await node6.call("worker", queue=queue_name)
    ids = [await node6.call("add", queue=queue_name, data={"mode": "flaky"}) for _ in range(2)]

    async def failed() -> bool:
        return bool((await node6.call("counts", queue=queue_name))["failed"] == 2)

    await wait_until(failed, within=30)
    await node6.call("failing", on=False)

    backend = BullMQBackend()
    app = DashboardApp(redis_url, backend, queues=[queue_name], poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        assert "READ-ONLY" not in visible_text(app)
        await pilot.press("enter", "5")  # the queue, its failed tab
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
        assert backend.actor._queues == {}  # reads construct nothing of the bullmq package

        await pilot.press("r")
        await confirm(pilot, app)
        await until(pilot, lambda: "retried job" in notices(app))
        retried = next(i for i in ids if f"retried job {i!r}" in notices(app))

        async def completed() -> bool:
            return bool(await node6.call("state", queue=queue_name, id=retried) == "completed")

        await wait_until(completed, within=30)
        assert queue_name in backend.actor._queues  # constructed when the action ran
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)

        await pilot.press("p")
        await confirm(pilot, app)
        await until(pilot, lambda: f"paused {queue_name!r}" in notices(app))
        assert await node6.call("isPaused", queue=queue_name) is True
        await until(pilot, lambda: "PAUSED" in visible_text(app))
        late = await node6.call("add", queue=queue_name, name="late")
        await asyncio.sleep(1.0)
        assert await node6.call("state", queue=queue_name, id=late) == "waiting"

        await pilot.press("p")
        await confirm(pilot, app)
        await until(pilot, lambda: f"resumed {queue_name!r}" in notices(app))

        async def ran() -> bool:
            return bool(await node6.call("state", queue=queue_name, id=late) == "completed")

        await wait_until(ran, within=30)
        await until(pilot, lambda: "PAUSED" not in visible_text(app))
    counts = await node6.call("counts", queue=queue_name)
    assert (counts["completed"], counts["failed"], counts["waiting"]) == (2, 1, 0)


async def test_p_on_a_bullmq5_queue_says_why_it_is_not_paused(
    node5: NodeDriver, redis_url: str, queue_name: str
) -> None:
    await node5.call("worker", queue=queue_name)
    await node5.call("add", queue=queue_name)
    app = DashboardApp(redis_url, BullMQBackend(), queues=[queue_name], poll_interval=0.2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("p")
        await confirm(pilot, app)
        await until(pilot, lambda: "pause refused" in notices(app))
        await pilot.pause(0.3)
        text = visible_text(app)
        assert "pause refused" in text and "PAUSED" not in text  # shown, not only logged
    assert await node5.call("isPaused", queue=queue_name) is False
