"""``A`` (promote all delayed) and ``R`` on a dead-letter queue (replay all) at 80x24: the exact
ids read when the key is pressed, a typed confirmation naming the count, batches behind the
progress modal with its stop key, only jobs still in the state seen, and one audit entry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pilot import SIZE, make_app, notices, until, visible_text
from textual.pilot import Pilot
from textual.widgets import Button, Input
from workload import dead_letter

import dashboard.app
from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.dead_letters import DeadLettersScreen
from dashboard.screens.progress import ProgressScreen
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(90)

DELAYED = 6


@pytest.fixture
async def queue(redis_url: str, queue_name: str) -> AsyncIterator[Queue]:
    """Six delayed jobs, ``d0`` running soonest, and one waiting job."""
    async with Queue(queue_name, redis_url) as q:
        for i in range(DELAYED):
            await q.add("later", {"i": i}, job_id=f"d{i}", delay=3_600_000 + i * 60_000)
        await q.add("now", {}, job_id="ready")
        yield q


def entries(path: Path) -> list[dict[str, str]]:
    """The audit log's entries (none if it was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _open_queue(pilot: Pilot[None], app: DashboardApp, name: str) -> QueueScreen:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(name) is not None)
    await pilot.press("enter", "3")  # the queue, its delayed tab
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await until(pilot, lambda: screen.page is not None and screen.page.state == "delayed")
    return screen


async def _asked(pilot: Pilot[None], app: DashboardApp, key: str) -> str:
    """Press ``key``; the confirmation's question once it is on screen."""
    await pilot.press(key)
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.1)
    assert "Type the queue name to confirm" in visible_text(app)
    return str(app.screen.query_one("#confirm-body").render())


async def _confirm_typed(pilot: Pilot[None], app: DashboardApp, name: str) -> None:
    await pilot.pause(0.4)  # past the debounce
    confirm = app.screen.query_one("#confirm", Button)
    assert confirm.disabled  # nothing runs before the queue name is typed
    app.screen.query_one(Input).value = name
    await pilot.pause(0.05)
    confirm.press()


async def test_promote_all_acts_on_the_delayed_jobs_seen(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await _open_queue(pilot, app, queue.name)
        await _asked(pilot, app, "A")
        await pilot.press("escape")  # asked, then left: nothing happens, nothing is written
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        assert (await queue.get_counts("delayed"))["delayed"] == DELAYED
        assert entries(audit_path) == []

        text = await _asked(pilot, app, "A")
        assert f"Promote these {DELAYED} delayed jobs of queue" in text
        assert "if still delayed" in text
        # while the modal is open: one seen job is promoted elsewhere, one removed, one added
        await queue.promote_job("d0")
        await queue.remove_job("d1")
        await queue.add("later", {}, job_id="new", delay=3_600_000)
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: "promoted 4 delayed jobs" in notices(app))
        assert "2 not promoted: 1 no longer exists, 1 now wait" in notices(app)
        progress = app.screen
        assert isinstance(progress, ProgressScreen)  # the outcome stays until closed
        await until(pilot, lambda: "promoted 4 delayed jobs" in visible_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    assert await queue.get_job_ids("delayed") == ["new"]  # not seen: left alone
    assert await queue.get_job_state("d1") is None
    assert sorted(await queue.get_job_ids("wait")) == ["d0", "d2", "d3", "d4", "d5", "ready"]
    (entry,) = entries(audit_path)
    assert (entry["action"], entry["queue"]) == ("promote all", queue.name)
    assert entry["scope"] == f"{DELAYED} delayed jobs (of {DELAYED})"
    assert entry["outcome"].startswith("promoted 4 delayed jobs")


async def test_promote_all_is_capped_and_says_so(
    queue: Queue, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard.app, "BULK_LIMIT", 4)
    app = make_app(redis_url, queue.name)
    async with app.run_test(size=SIZE) as pilot:
        await _open_queue(pilot, app, queue.name)
        text = await _asked(pilot, app, "A")
        assert f"Promote the 4 soonest of {DELAYED} delayed jobs of queue" in text
        assert "At most 4 at a time: press A again for the rest." in text
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: "promoted 4 delayed jobs" in notices(app))
    assert sorted(await queue.get_job_ids("delayed")) == ["d4", "d5"]  # the latest stay


async def test_promote_all_stops_between_batches(
    queue: Queue, redis_url: str, audit_path: Path
) -> None:
    app = make_app(redis_url, queue.name)
    app.actions.batch_size = 2
    app.actions.batch_pause = 1.0  # room to press the stop key between batches
    async with app.run_test(size=SIZE) as pilot:
        await _open_queue(pilot, app, queue.name)
        await _asked(pilot, app, "A")
        await _confirm_typed(pilot, app, queue.name)
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
        progress = app.screen
        assert isinstance(progress, ProgressScreen)
        await until(pilot, lambda: progress.run.done >= 2)
        await pilot.press("c")
        await until(pilot, lambda: progress.outcome is not None)
        done = progress.run.done
        assert 2 <= done < DELAYED
        assert f"promoted {done} delayed jobs" in notices(app)
        assert f"stopped: {DELAYED - done} not attempted" in notices(app)
    assert (await queue.get_counts("delayed"))["delayed"] == DELAYED - done
    (entry,) = entries(audit_path)
    assert "stopped" in entry["outcome"]


async def test_replay_all_acts_on_the_dead_letters_seen(
    redis_url: str, queue_name: str, audit_path: Path
) -> None:
    dlq_name = queue_name + "-dead"
    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        origin_ids = await dead_letter(queue, dlq, redis_url, 4)
        seen = await dlq.get_job_ids("failed")
        app = DashboardApp(redis_url, CorralBackend(), queues=[dlq_name], poll_interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("D")
            await until(pilot, lambda: isinstance(app.screen, DeadLettersScreen))
            text = await _asked(pilot, app, "R")
            assert f"Replay these 4 dead letters of queue {dlq_name}" in text
            assert "to their origin queues, with fresh attempts?" in text
            # while the modal is open, one of them is replayed by someone else
            await dlq.replay_dead_letters([seen[0]])
            await _confirm_typed(pilot, app, dlq_name)
            await until(pilot, lambda: "replayed 3 dead letters" in notices(app))
            assert f"1 stayed ({seen[0]}: not a dead letter here)" in notices(app)
        assert (await dlq.get_counts("failed"))["failed"] == 0
        assert sorted(await queue.get_job_ids("wait")) == sorted(origin_ids)
    (entry,) = entries(audit_path)
    assert (entry["action"], entry["queue"]) == ("replay all", dlq_name)
    assert entry["scope"] == "4 dead letters (of 4)"


async def test_replay_all_stops_between_batches(redis_url: str, queue_name: str) -> None:
    dlq_name = queue_name + "-dead"
    async with Queue(queue_name, redis_url) as queue, Queue(dlq_name, redis_url) as dlq:
        await dead_letter(queue, dlq, redis_url, 3)
        app = DashboardApp(redis_url, CorralBackend(), queues=[dlq_name], poll_interval=0.2)
        app.actions.batch_size = 1
        app.actions.batch_pause = 1.0
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter")  # R on the queue screen of a dead-letter queue: replay
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            text = await _asked(pilot, app, "R")
            assert f"Replay these 3 dead letters of queue {dlq_name}" in text
            await _confirm_typed(pilot, app, dlq_name)
            await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
            progress = app.screen
            assert isinstance(progress, ProgressScreen)
            await until(pilot, lambda: progress.run.done >= 1)
            await pilot.press("escape")  # the stop key, while it runs
            await until(pilot, lambda: progress.outcome is not None)
            done = progress.run.done
            assert 1 <= done < 3
            assert f"stopped: {3 - done} not attempted" in notices(app)
        assert (await dlq.get_counts("failed"))["failed"] == 3 - done
        assert (await queue.get_counts("wait"))["wait"] == done
