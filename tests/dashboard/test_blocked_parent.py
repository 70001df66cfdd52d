"""A parent in waiting-children says on its screen which child holds it and why: a child that
failed for good (no failure policy) with its reason, at 80x24, against a real flow and worker."""

from __future__ import annotations

from typing import Any

import pytest
from pilot import SIZE, make_app, until, visible_text
from support.workers import running_worker, wait_until

from dashboard.screens.job import JobScreen
from engine import FlowProducer, Job, JobState, Queue

pytestmark = pytest.mark.timeout(60)


async def _process(job: Job) -> Any:
    if job.name == "send":
        raise ValueError("SMTP 550 mailbox refused")
    return "ok"


async def test_parent_names_the_failed_child_that_blocks_it(
    redis_url: str, queue_name: str
) -> None:
    other = "b" + queue_name[1:]
    async with FlowProducer(redis_url) as producer:
        root = await producer.add(
            {
                "name": "report",
                "queue": queue_name,
                "children": [
                    {"name": "fetch", "queue": other},
                    {"name": "send", "queue": other, "opts": {"attempts": 1}},
                ],
            }
        )
    send = next(c for c in root.children if c.job is not None and c.job.name == "send")
    async with Queue(queue_name, redis_url) as parents, Queue(other, redis_url) as children:
        async with running_worker(other, _process, redis_url):

            async def both_done() -> bool:
                counts = await children.get_counts("completed", "failed")
                return counts == {"completed": 1, "failed": 1}

            await wait_until(both_done, within=20)
        assert await parents.get_job_state(root.ref.id) is JobState.WAITING_CHILDREN
        assert await children.get_job_state(send.ref.id) is JobState.FAILED

        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None)
            app.open_job(queue_name, root.ref.id)
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)
            await until(pilot, lambda: screen.links is not None)
            await pilot.pause(0.1)
            text = visible_text(app)
            (line,) = [row for row in text.splitlines() if "blocked by child" in row]
            assert f"blocked by child {send.ref.id} of {other[:13]}" in line
            assert "failed (ValueError: SMTP 550" in line
            assert "more pending" not in line  # fetch completed: only send holds it
        assert await parents.get_job_state(root.ref.id) is JobState.WAITING_CHILDREN
