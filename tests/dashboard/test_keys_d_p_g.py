"""``d`` (discard), ``P`` (promote), ``p`` (pause/resume) and ``g`` (go to a job) driven by
Pilot at 80x24 against a real server: what the screen says, what the engine holds, and the
audit log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pilot import SIZE, make_app, notices, until, visible_text
from textual.widgets import Input

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """Three waiting jobs."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(3):
            await q.add("send", {"i": i}, job_id=f"job-{i}")
        yield q


def entries(path: Path) -> list[dict[str, str]]:
    """The audit log's entries."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_d_discards_the_job_under_the_cursor_after_confirming(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 3)
        job_id = screen.selected_job()
        assert job_id is not None
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        assert f"Discard job {job_id} of queue {queue.name}?" in visible_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        assert await queue.get_job_state(job_id) == "wait"
        assert entries(audit_path) == []
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        await pilot.press("tab", "enter")
        await until(pilot, lambda: f"discarded job {job_id!r}" in notices(app))
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
        assert await queue.get_job_state(job_id) is None
        assert job_id not in visible_text(app)
    (entry,) = entries(audit_path)
    assert (entry["action"], entry["scope"]) == ("discard", f"job {job_id!r}")


async def test_p_pauses_then_resumes_the_selected_queue(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        for verb, paused in (("Pause", True), ("Resume", False)):
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.4)
            assert f"{verb} queue {queue.name}?" in visible_text(app)
            await pilot.press("tab", "enter")
            await until(pilot, lambda: isinstance(app.screen, OverviewScreen))

            def shown(paused: bool = paused) -> bool:
                row = app.snapshot.queue(queue.name) if app.snapshot else None
                return row is not None and row.paused is paused

            await until(pilot, shown)
            await pilot.pause(0.1)
            assert await queue.is_paused() is paused
            row = next(line for line in visible_text(app).splitlines() if queue.name in line)
            assert ("⏸" in row) is paused
    assert [e["action"] for e in entries(audit_path)] == ["pause", "resume"]
    assert (await queue.get_counts("wait", "paused")) == {"wait": 3, "paused": 0}


async def test_g_opens_a_job_by_id_and_says_when_there_is_none(
    queue: Queue, redis_url: str
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        for typed, expected in (
            ("job-1", '"i": 1'),
            ("nope", f"no job nope in queue {queue.name}"),
            ("[/]", f"no job [/] in queue {queue.name}"),  # typed markup stays text
        ):
            await pilot.press("g")
            await until(pilot, lambda: isinstance(app.screen, PromptScreen))
            app.screen.query_one(Input).value = typed
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, JobScreen))
            screen = app.screen
            assert isinstance(screen, JobScreen)

            def shows(expected: str = expected) -> bool:
                return expected in visible_text(app)

            await until(pilot, shows)
            assert screen.job_id == typed
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("escape")  # nothing typed: back, nothing opened
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))


async def test_p_promotes_a_delayed_job_and_n_says_no(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    await queue.add("later", {}, delay=3_600_000, job_id="later")
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await pilot.press("3")  # delayed tab
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        assert f"Promote job later of queue {queue.name}?" in visible_text(app)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        assert await queue.get_job_state("later") == "delayed"
        assert entries(audit_path) == []
        await pilot.press("P")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        await pilot.press("tab", "enter")
        await until(pilot, lambda: "promoted job 'later'" in notices(app))
        assert await queue.get_job_state("later") == "wait"
        await until(pilot, lambda: screen.page is not None and not screen.page.rows)
    (entry,) = entries(audit_path)
    assert (entry["action"], entry["scope"], entry["outcome"]) == (
        "promote",
        "job 'later'",
        "promoted job 'later'",
    )
