"""The job screen with hostile sizes (D5): a 10 MB value is shown a bounded window at a time, and
"more" pages through it with an explicit marker instead of growing what is rendered."""

from __future__ import annotations

import json
import re
import time

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, until, visible_text
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.screens.job import JobScreen
from dashboard.widgets.job_detail import WINDOW, JobDetailView
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

TEN_MB = 10 * 1024 * 1024
TOKEN = 9
"""Each ``<0000123>`` token of the blob is 9 characters: where a window starts says which
token it shows first."""
HEAD = '{"blob": "'
SECRET_AT = 3 * WINDOW - 20
"""A secret straddling the boundary of the third and fourth windows (raw text positions)."""
SECRET = " password=hunter2-straddling-the-cut "


def blob() -> str:
    """About 10 MB of numbered tokens, with ``SECRET`` written over them at ``SECRET_AT``."""
    text = "".join(f"<{i:07d}>" for i in range(TEN_MB // TOKEN))
    at = SECRET_AT - len(HEAD)
    return text[:at] + SECRET + text[at + len(SECRET) :]


def tokens(raw: str, part: int) -> list[str]:
    """The whole tokens window ``part`` of the raw text shows."""
    return re.findall(r"<\d{7}>", raw[part * WINDOW : (part + 1) * WINDOW])


async def _open(pilot: Pilot[None], app: DashboardApp, queue: str, job_id: str) -> JobScreen:
    await until(pilot, lambda: app.snapshot is not None)
    app.open_job(queue, job_id)
    await until(pilot, lambda: isinstance(app.screen, JobScreen))
    screen = app.screen
    assert isinstance(screen, JobScreen)
    await until(pilot, lambda: screen.detail is not None)
    await pilot.pause(0.1)
    return screen


async def _until_shown(pilot: Pilot[None], view: JobDetailView, text: str) -> None:
    await until(pilot, lambda: text in str(view.content))


async def test_ten_megabytes_are_paged_in_bounded_windows(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("import", {"rows": 1})
    # Bigger than the engine accepts: as another client, or an older version, could have written.
    raw = json.dumps({"blob": blob()})
    assert raw.startswith(HEAD) and raw[SECRET_AT : SECRET_AT + len(SECRET)] == SECRET
    await redis.hset(QueueKeys(queue_name).job(job.id), "data", raw)
    count = -(-len(raw) // WINDOW)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app, queue_name, job.id)
        view = screen.query_one(JobDetailView)
        content = str(view.content)
        assert len(content) < 2 * WINDOW  # one window, not ten megabytes of text
        assert f"part 1 of {count:,}" in content and "more chars" in content
        assert "Help" in visible_text(app)  # the screen and its keys are there
        shown = [content]
        for part in (1, 2, 3):
            started = time.perf_counter()
            await pilot.press("m")
            await _until_shown(pilot, view, f"part {part + 1} of")
            await pilot.pause(0.05)
            elapsed = time.perf_counter() - started
            content = str(view.content)
            shown.append(content)
            assert len(content) < 2 * WINDOW  # bounded: the next window, never a bigger one
            assert tokens(raw, part)[0] in content and tokens(raw, part)[-1] in content
            assert tokens(raw, part - 1)[0] not in content  # the window before is gone
            first, last = part * WINDOW + 1, (part + 1) * WINDOW
            marker = f"part {part + 1} of {count:,}: chars {first:,}-{last:,} of {len(raw):,}"
            assert marker in content
            text = visible_text(app)
            assert f"part {part + 1} of {count:,}" in text  # on screen, at 80x24
            assert tokens(raw, part)[0] in text
            assert elapsed < 2.0  # a generous guard only: the bound above is the assertion
        # the secret cut by the windows' edge is masked on both sides of it
        assert not any("hunter2" in part or "straddling" in part for part in shown)
        assert "password=***" in shown[2]
        await pilot.press("M")
        await _until_shown(pilot, view, "part 3 of")
        assert tokens(raw, 2)[0] in str(view.content)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobScreen))


async def test_more_stops_at_the_last_part_of_a_short_job(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("import", {"rows": 1})
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, app, queue_name, job.id)
        before = str(screen.query_one(JobDetailView).content)
        assert "part 1 of" not in before  # nothing long: no marker at all
        await pilot.press("m")
        await until(pilot, lambda: "last part of the longest value" in notices(app))
        assert str(screen.query_one(JobDetailView).content) == before
        assert screen.part == 0
