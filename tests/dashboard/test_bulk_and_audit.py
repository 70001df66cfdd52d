"""Bulk actions, retrying a completed job, and the audit log: Pilot at 80x24 against a real
server and engine workload, asserting the screen, the engine's state and the audit file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pilot import SIZE, make_app, notices, until, visible_text
from textual.pilot import Pilot
from textual.widgets import Button, Input
from workload import finish_jobs

import dashboard.app
from dashboard.app import DashboardApp
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.progress import ProgressScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """2 completed and 6 failed jobs, nothing waiting."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(8):
            await q.add("send", {"i": i})
        await finish_jobs(q, complete=2, fail=6)
        yield q


def entries(path: Path) -> list[dict[str, str]]:
    """The audit log's entries (none if it was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def mode_of(path: Path) -> int:
    """The file's permission bits."""
    return path.stat().st_mode & 0o777


async def _confirm_typed(pilot: Pilot[None], app: DashboardApp, name: str) -> None:
    await pilot.pause(0.4)  # past the debounce
    app.screen.query_one(Input).value = name
    await pilot.pause(0.05)
    app.screen.query_one("#confirm", Button).press()


async def _ask_retry_all(pilot: Pilot[None], app: DashboardApp, name: str) -> None:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(name) is not None)
    await pilot.press("R")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.05)


async def test_retry_all_acts_on_the_jobs_seen_and_reports_the_others(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts on screen
        await _ask_retry_all(pilot, app, queue.name)
        text = visible_text(app)
        assert "Retry these 6 failed jobs of queue" in text
        assert "new failures are left alone" in text
        seen = await queue.get_job_ids("failed")
        # while the modal is open: a seen job is retried elsewhere and completes; a new one fails
        await queue.retry_job(seen[0])
        await finish_jobs(queue, complete=1, fail=0)
        await queue.add("late", {}, job_id="late")
        await finish_jobs(queue, complete=0, fail=1)
        assert await queue.get_job_state(seen[0]) == "completed"
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: "retried 5 failed jobs" in notices(app))
        assert "1 not retried: 1 now completed" in notices(app)
        await until(pilot, lambda: "retried 5 failed jobs" in visible_text(app))
        progress = app.screen
        assert isinstance(progress, ProgressScreen)  # the modal shows the outcome too
        assert progress.outcome is not None and "1 now completed" in progress.outcome
        assert "enter/esc: close" in visible_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        assert await queue.get_job_state("late") == "failed"
        assert all([await queue.get_job_state(j) == "wait" for j in seen[1:]])
        (entry,) = entries(audit_path)
        assert entry["action"] == "retry all" and entry["queue"] == queue.name
        assert entry["scope"] == "6 failed jobs (of 6)"
        assert entry["outcome"].startswith("retried 5 failed jobs")
        assert entry["user"] and entry["time"]


async def test_retry_all_says_when_it_is_capped(
    queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard.app, "BULK_LIMIT", 4)
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await _ask_retry_all(pilot, app, queue.name)
        text = visible_text(app)
        assert "Retry the 4 newest of 6 failed jobs" in text
        assert "At most 4 at a time" in text
        newest = (await queue.get_job_ids("failed"))[:4]
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: "retried 4 failed jobs" in notices(app))
        assert (await queue.get_counts("failed"))["failed"] == 2
        assert all([await queue.get_job_state(j) == "wait" for j in newest])


async def test_bulk_progress_shows_and_stops_between_batches(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    app.actions.batch_size = 2
    app.actions.batch_pause = 1.0  # room to press the stop key between batches
    async with app.run_test(size=SIZE) as pilot:
        await _ask_retry_all(pilot, app, queue.name)
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
        progress = app.screen
        assert isinstance(progress, ProgressScreen)
        await until(pilot, lambda: progress.run.done >= 2)
        await pilot.pause(0.15)
        assert "of 6" in visible_text(app) and "stop after this batch" in visible_text(app)
        await pilot.press("c")
        await until(pilot, lambda: "stopped:" in notices(app))
        await until(pilot, lambda: progress.outcome is not None)
        assert progress.outcome is not None and "not attempted" in progress.outcome
        await until(pilot, lambda: "enter/esc: close" in visible_text(app))
        await pilot.press("escape")  # the run ended: escape now closes
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        done = progress.run.done
        assert 2 <= done < 6
        assert f"retried {done} failed jobs" in notices(app)
        assert f"stopped: {6 - done} not attempted" in notices(app)
        assert (await queue.get_counts("failed"))["failed"] == 6 - done
        (entry,) = entries(audit_path)
        assert "stopped" in entry["outcome"]


async def test_escape_leaves_the_queue_alone_and_writes_nothing(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await _ask_retry_all(pilot, app, queue.name)
        await pilot.pause(0.4)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("p")  # pause: asked, then cancelled with the focused Cancel
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))
        await pilot.pause(0.2)
    assert (await queue.get_counts("failed"))["failed"] == 6
    assert not await queue.is_paused()
    assert entries(audit_path) == []


async def test_r_retries_a_completed_job_and_audits_it(
    queue: Queue, redis_url: str, audit_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER", "ann")
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.9 50022 10.0.0.5 22")
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await pilot.press("6")  # completed tab
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
        job_id = screen.selected_job()
        assert job_id is not None
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        assert "Retry completed job" in visible_text(app)
        await pilot.press("tab", "enter")
        await until(pilot, lambda: "back in wait" in notices(app))
        assert await queue.get_job_state(job_id) == "wait"
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
    (entry,) = entries(audit_path)
    assert (entry["user"], entry["ssh_client"]) == ("ann", "203.0.113.9")
    assert (entry["action"], entry["queue"]) == ("retry", queue.name)
    assert entry["scope"] == f"job {job_id!r} (completed)"
    assert entry["outcome"] == f"retried job {job_id!r}: back in wait"
    assert mode_of(audit_path) == 0o600


async def test_clean_runs_behind_the_progress_modal(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    app.actions.batch_size = 1
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await pilot.press("5", "c")  # failed tab: clean failed
        await until(pilot, lambda: bool(app.screen.query("#prompt-box")))
        prompt = app.screen.query_one(Input)
        prompt.value = "0"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.05)
        assert "Remove 6 failed jobs" in visible_text(app)
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: "removed 6 failed jobs" in notices(app))
        assert (await queue.get_counts("failed"))["failed"] == 0
    (entry,) = entries(audit_path)
    assert entry["action"] == "clean failed" and entry["outcome"] == "removed 6 failed jobs"


async def test_closing_the_dashboard_mid_run_still_leaves_one_entry(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    app.actions.batch_size = 2
    app.actions.batch_pause = 1.0
    async with app.run_test(size=SIZE) as pilot:
        await _ask_retry_all(pilot, app, queue.name)
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
        progress = app.screen
        assert isinstance(progress, ProgressScreen)
        await until(pilot, lambda: progress.run.done >= 2)
        await pilot.press("ctrl+c")
    done = progress.run.done
    (entry,) = entries(audit_path)
    assert entry["outcome"] == f"interrupted after {done} of 6: the dashboard closed"
    assert (await queue.get_counts("failed"))["failed"] == 6 - done


async def test_r_on_a_completed_job_screen_retries_it(queue: Queue, redis_url: str) -> None:
    done = (await queue.get_job_ids("completed"))[0]
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        app.open_job(queue.name, done)
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await until(pilot, lambda: screen.detail is not None)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.4)
        assert f"Retry completed job {done} of queue" in visible_text(app)
        await pilot.press("tab", "enter")
        await until(pilot, lambda: "back in wait" in notices(app))
        assert await queue.get_job_state(done) == "wait"
        await until(pilot, lambda: screen.detail is not None and screen.detail.state == "wait")
