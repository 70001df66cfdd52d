"""Dead letters in the dashboard at 80x24: listed with origin, name, reason, attempts and age;
replayed (one, marked ones, all; typed for several) to their origin queue with fresh attempts;
``r`` on a dead-letter queue's failed tab replays instead of retrying inside it."""

from __future__ import annotations

from typing import Any

import pytest
from pilot import SIZE, notices, until, visible_text
from support.workers import running_worker, wait_until
from textual.widgets import Button, Input

from dashboard.actions import JobActions, ReadOnlyError
from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.corral_backend import CorralBackend
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.dead_letters import DeadLettersScreen
from dashboard.screens.queue import QueueScreen
from engine import Job, Queue

pytestmark = pytest.mark.timeout(90)


async def _dead_letter(queue: Queue, dlq: Queue, url: str, names: list[str]) -> list[str]:
    """Jobs that fail their only attempt under a real worker, so they become dead letters."""

    async def process(job: Job) -> Any:
        raise ValueError(f"bad payload for {job.name}")

    added = [await queue.add(name, {"n": i}, attempts=1, dead_letter=dlq.name) for i, name in
             enumerate(names)]  # fmt: skip
    async with running_worker(queue.name, process, url):

        async def all_dead() -> bool:
            return (await dlq.get_counts("failed"))["failed"] == len(names)

        await wait_until(all_dead, within=20)
    return [job.id for job in added]


async def _confirm(pilot: Any, app: DashboardApp, typed: str | None = None) -> str:
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    body = str(app.screen.query_one("#confirm-body").render())
    await pilot.pause(0.4)  # past the debounce
    confirm = app.screen.query_one("#confirm", Button)
    if typed is not None:
        assert confirm.disabled  # the queue name is not typed yet
        app.screen.query_one(Input).value = typed
        await pilot.pause(0.05)
    confirm.press()
    return body


async def test_dead_letters_listed_and_replayed(redis_url: str, queue_name: str) -> None:
    dlq_name = queue_name + "-dead"
    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        origin_ids = await _dead_letter(queue, dlq, redis_url, ["charge", "refund", "email"])
        app = DashboardApp(
            redis_url, CorralBackend(), queues=[queue_name, dlq_name], poll_interval=0.2
        )
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 2)
            snapshot = app.snapshot
            assert snapshot is not None
            assert [q.dead_letter for q in snapshot.queues] == [False, True]
            await pilot.pause(0.1)
            (marked,) = [line for line in visible_text(app).splitlines() if "✉" in line]
            assert dlq_name[:10] in marked and queue_name + " " not in marked
            await pilot.press("D")  # from the overview: the only dead-letter queue
            await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen))
            screen = app.screen
            assert isinstance(screen, DeadLettersScreen)
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 3)
            await pilot.pause(0.1)
            text = visible_text(app)
            assert f"dead letters of {dlq_name}" in text and "3 dead letters" in text
            for name in ("charge", "refund", "email"):
                (line,) = [row for row in text.splitlines() if f" {name} " in row]
                assert queue_name[:12] in line  # from
                assert "ValueError: bad payload" in line  # reason
                assert line.split()[4] == "1"  # attempts (no mark yet)
            assert max(len(line) for line in text.splitlines()) <= 80

            # mark two: a replay of several asks for the dead-letter queue's name
            await pilot.press("space", "space")
            await until(pilot, lambda: "2 marked" in visible_text(app))
            await pilot.press("r")
            body = await _confirm(pilot, app, typed=dlq_name)
            assert "Replay 2 dead letters" in body and f"{queue_name} (2)" in body
            await until(pilot, lambda: "replayed 2 dead letters" in notices(app))
            assert (await dlq.get_counts("failed"))["failed"] == 1
            assert (await queue.get_counts("wait"))["wait"] == 2
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)

            # R: all the rest, typed
            await pilot.press("R")
            body = await _confirm(pilot, app, typed=dlq_name)
            assert f"Replay the one dead letter of queue {dlq_name}" in body
            await until(pilot, lambda: "replayed dead letter" in notices(app))
            await until(pilot, lambda: screen.page is not None and not screen.page.rows)
        assert (await dlq.get_counts("failed", "wait")) == {"failed": 0, "wait": 0}
        assert sorted(await queue.get_job_ids("wait")) == sorted(origin_ids)
        for job_id in origin_ids:  # back under their own ids, with fresh attempts
            job = await queue.get_job(job_id)
            assert job is not None and job.attempts_made == 0 and job.failed_reason is None


async def test_r_on_a_dead_letter_queue_replays_to_the_origin(
    redis_url: str, queue_name: str
) -> None:
    dlq_name = queue_name + "-dead"
    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        (origin_id,) = await _dead_letter(queue, dlq, redis_url, ["charge"])
        (dl_id,) = await dlq.get_job_ids("failed")
        app = DashboardApp(redis_url, CorralBackend(), queues=[dlq_name], poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and len(app.snapshot.queues) == 1)
            await pilot.press("enter", "5")  # the dead-letter queue, its failed tab
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
            assert "dead-letter queue" in visible_text(app)
            await pilot.press("r")
            body = await _confirm(pilot, app)
            assert f"Replay dead letter {dl_id} of queue {dlq_name}" in body
            assert f"to queue {queue_name} (as job {origin_id})" in body
            await until(pilot, lambda: "replayed dead letter" in notices(app))
        # not retried inside the dead-letter queue: back on the origin queue, fresh attempts
        assert await dlq.get_counts("failed", "wait") == {"failed": 0, "wait": 0}
        assert await queue.get_job_ids("wait") == [origin_id]
        job = await queue.get_job(origin_id)
        assert job is not None and job.attempts_made == 0


async def test_bullmq_queues_refuse_a_replay(redis_url: str, redis: Any) -> None:
    actions = JobActions(BullMQBackend(), redis, read_only=False)
    with pytest.raises(ReadOnlyError, match="BullMQ has no dead-letter queues"):
        await actions.replay("emails", ["1"])
