"""The stalled screen (``s`` from the overview) at 80x24 on a BullMQ queue (5 and 6) whose Node
worker was SIGKILLed while it held long jobs: once their locks expire the rows say
"GONE (stalled)", and when a new Node worker's stall sweep recovers them the rows go, the
stalled events are shown, and the jobs complete in Node's own view."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bullmq_node import HoldingWorker, NodeDriver
from support.screen import SIZE, until, visible_text
from support.workers import wait_until

from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.widgets.active_table import ActiveTable

pytestmark = pytest.mark.timeout(120)

GONE = "GONE (stalled)"


def lock_column(text: str, job_ids: list[str]) -> dict[str, str]:
    """Each job's lock column as the screen shows it ("held" or "GONE (stalled)"), by the rows
    of the active table (a row starts with the job's id and its name, ``long``)."""
    shown = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in job_ids and words[1] == "long":
            shown[words[0]] = GONE if GONE in line else "held" if " held " in line else line
    return shown


async def test_a_killed_node_workers_jobs_show_stalled_until_a_new_worker_recovers_them(
    node: NodeDriver, bullmq_modules: Path, redis_url: str, queue_name: str
) -> None:
    job_ids = [
        str(await node.call("add", queue=queue_name, name="long", data={"i": i})) for i in range(2)
    ]
    holder = HoldingWorker(
        bullmq_modules,
        redis_url,
        queue_name,
        concurrency=2,
        lock_duration=1_000,
        stalled_interval=500,
    )
    await holder.start()
    try:
        assert sorted(await holder.wait_taken(2)) == sorted(job_ids)
    finally:
        await holder.kill()  # SIGKILL while it holds both: their locks expire within 1 s

    app = DashboardApp(
        redis_url, BullMQBackend(), queues=[queue_name], read_only=True, poll_interval=0.2
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StalledScreen))
        screen = app.screen
        assert isinstance(screen, StalledScreen) and screen.queue == queue_name

        def all_gone() -> bool:
            return lock_column(visible_text(app), job_ids) == dict.fromkeys(job_ids, GONE)

        await until(pilot, all_gone)
        text = visible_text(app)
        assert "2 active, 2 without lock" in text
        rows = [line for line in text.splitlines() if GONE in line]
        assert len(rows) == 2 and all(row.split()[-1] == "holder" for row in rows)  # who died
        assert "no stalled events since the dashboard started" in text  # none swept yet
        await pilot.pause(1.0)  # no live worker: they stay stalled on screen
        assert all_gone(), visible_text(app)

        # a new worker's stall sweep moves them back to wait, and it then runs them
        await node.call("worker", queue=queue_name, stalledInterval=500, lockDuration=1_000)

        async def completed() -> bool:
            states = [await node.call("state", queue=queue_name, id=i) for i in job_ids]
            return states == ["completed", "completed"]

        await wait_until(completed, within=30)
        table = screen.query_one(ActiveTable)
        await until(
            pilot,
            lambda: (
                table.row_count == 0
                and "0 active, 0 without lock" in visible_text(app)
                and "2 stalled events" in visible_text(app)
            ),
        )
        text = visible_text(app)
        assert GONE not in text and lock_column(text, job_ids) == {}
        assert all(f"job {job_id}  queue {queue_name}" in text for job_id in job_ids)
        assert isinstance(app.screen, StalledScreen)
    for i, job_id in enumerate(job_ids):
        job = await node.call("job", queue=queue_name, id=job_id)
        assert job["state"] == "completed" and job["returnvalue"] == {"done": {"i": i}}
