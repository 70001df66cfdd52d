"""Keys of the queue screen at 80x24 against a real server: ``n``/``N`` page through a queue
with more jobs than a page, ``f`` holds the screen still while the engine's counts change, and
``c`` cleans only the completed jobs older than the age typed, with escape and the stop key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, until, visible_text
from textual.pilot import Pilot
from textual.widgets import Button, Input
from workload import finish_jobs

from dashboard.app import DashboardApp
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.progress import ProgressScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import PAGE_SIZE, QueueScreen
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

HOUR_MS = 3_600_000


def entries(path: Path) -> list[dict[str, str]]:
    """The audit log's entries (none if it was never written)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _open(pilot: Pilot[None], app: DashboardApp, name: str) -> QueueScreen:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(name) is not None)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await until(pilot, lambda: screen.page is not None)
    return screen


def _ids(screen: QueueScreen) -> list[str]:
    assert screen.page is not None
    return [row.id for row in screen.page.rows]


async def _page(pilot: Pilot[None], screen: QueueScreen, key: str, start: int) -> list[str]:
    """Press a paging key; the ids of the page it shows (starting at ``start``)."""
    await pilot.press(key)
    await until(pilot, lambda: screen.page is not None and screen.page.start == start)
    await pilot.pause(0.1)
    return _ids(screen)


async def test_n_and_shift_n_page_through_a_long_queue(redis_url: str, queue_name: str) -> None:
    total = 2 * PAGE_SIZE + 20
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("send", {"i": i}, {"job_id": f"p{i:03d}"}) for i in range(total)])
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(pilot, app, queue_name)
            first = _ids(screen)
            assert first == (await queue.get_job_ids("wait", 0, PAGE_SIZE - 1))
            assert len(first) == PAGE_SIZE and first[0] == f"p{total - 1:03d}"  # newest first
            assert f"rows 1-{PAGE_SIZE} of {total}  page 1/3" in visible_text(app)
            assert first[0] in visible_text(app)

            second = await _page(pilot, screen, "n", PAGE_SIZE)
            assert second == await queue.get_job_ids("wait", PAGE_SIZE, 2 * PAGE_SIZE - 1)
            assert not set(second) & set(first)
            text = visible_text(app)
            assert "page 2/3" in text and second[0] in text and first[0] not in text

            third = await _page(pilot, screen, "right_square_bracket", 2 * PAGE_SIZE)
            assert len(third) == 20 and third[-1] == "p000"
            assert f"rows {2 * PAGE_SIZE + 1}-{total} of {total}  page 3/3" in visible_text(app)
            await pilot.press("n")  # no page after the last one
            await pilot.pause(0.2)
            assert screen.start == 2 * PAGE_SIZE and _ids(screen) == third

            assert await _page(pilot, screen, "N", PAGE_SIZE) == second  # and back again
            assert await _page(pilot, screen, "left_square_bracket", 0) == first
            assert "page 1/3" in visible_text(app) and first[0] in visible_text(app)
            await pilot.press("N")  # none before the first
            await pilot.pause(0.2)
            assert screen.start == 0 and _ids(screen) == first


def _wait_column(app: DashboardApp, name: str) -> str:
    """The wait count the overview shows for the queue."""
    row = next(line for line in visible_text(app).splitlines() if name in line)
    return row.split()[1]


async def test_freeze_holds_the_screen_while_counts_change(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("send", {}) for _ in range(3)])
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.pause(0.1)
            assert isinstance(app.screen, OverviewScreen)
            assert _wait_column(app, queue_name) == "3"
            await pilot.press("f")
            await until(pilot, lambda: "FROZEN" in visible_text(app))
            await queue.add_bulk([("send", {}) for _ in range(5)])

            def counted(wait: int) -> bool:
                snapshot = app.snapshot.queue(queue_name) if app.snapshot else None
                return snapshot is not None and snapshot.counts.wait == wait

            await until(pilot, lambda: counted(8))  # the engine's counts changed, and were read
            await pilot.pause(0.5)  # a few more snapshots arrive while frozen
            assert _wait_column(app, queue_name) == "3"  # the screen holds still
            assert "FROZEN" in visible_text(app)
            await pilot.press("f")
            await until(pilot, lambda: _wait_column(app, queue_name) == "8")
            assert "FROZEN" not in visible_text(app)


async def _age_jobs(redis: aioredis.Redis, queue_name: str, ids: list[str]) -> None:
    """Make completed jobs look finished two hours ago (on the server's clock)."""
    seconds, micros = await redis.time()
    old = int(seconds) * 1000 + int(micros) // 1000 - 2 * HOUR_MS
    keys = QueueKeys(queue_name)
    await redis.zadd(keys.completed, dict.fromkeys(ids, old), xx=True)
    for job_id in ids:
        await redis.hset(keys.job(job_id), "finished_on", str(old))


async def _ask_clean(pilot: Pilot[None], app: DashboardApp) -> str:
    """``c`` on the completed tab, the default age (1h); the confirmation's question."""
    await pilot.press("c")
    await until(pilot, lambda: isinstance(app.screen, PromptScreen))
    assert app.screen.query_one(Input).value == "1h"
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.1)
    return str(app.screen.query_one("#confirm-body").render())


async def _confirm_typed(pilot: Pilot[None], app: DashboardApp, name: str) -> None:
    await pilot.pause(0.4)  # past the debounce
    app.screen.query_one(Input).value = name
    await pilot.pause(0.05)
    app.screen.query_one("#confirm", Button).press()


async def test_clean_removes_only_the_old_completed_jobs(
    redis_url: str, queue_name: str, redis: aioredis.Redis, audit_path: Path
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("send", {"i": i}, {"job_id": f"c{i}"}) for i in range(6)])
        await finish_jobs(queue, complete=6, fail=0)
        old, new = ["c0", "c1", "c2"], ["c3", "c4", "c5"]
        await _age_jobs(redis, queue_name, old)
        app = make_app(redis_url, queue_name)
        app.actions.batch_size = 1
        app.actions.batch_pause = 1.0  # room to press the stop key between batches
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open(pilot, app, queue_name)
            await pilot.press("6")  # the completed tab: c cleans completed jobs
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 6)

            question = await _ask_clean(pilot, app)
            assert "Remove 3 completed jobs finished longer ago than 1 hour" in question
            await pilot.press("escape")  # on the confirmation: nothing is removed
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            assert (await queue.get_counts("completed"))["completed"] == 6
            assert entries(audit_path) == []

            await _ask_clean(pilot, app)
            await _confirm_typed(pilot, app, queue_name)
            await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
            progress = app.screen
            assert isinstance(progress, ProgressScreen)
            await until(pilot, lambda: progress.run.done >= 1)
            await pilot.press("c")  # the stop key
            await until(pilot, lambda: progress.outcome is not None)
            removed = progress.run.done
            assert 1 <= removed < 3
            assert f"stopped: {3 - removed} not attempted" in notices(app)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            assert (await queue.get_counts("completed"))["completed"] == 6 - removed

            question = await _ask_clean(pilot, app)  # the rest: what is left of the old ones
            assert f"Remove {3 - removed} completed jobs" in question
            await _confirm_typed(pilot, app, queue_name)
            await until(pilot, lambda: f"removed {3 - removed} completed job" in notices(app))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 3)
        assert sorted(await queue.get_job_ids("completed")) == new
        assert all([await queue.get_job(job_id) is None for job_id in old])
    first, second = entries(audit_path)
    assert first["action"] == second["action"] == "clean completed"
    assert "stopped" in first["outcome"] and "stopped" not in second["outcome"]
