"""The job screen with hostile sizes (D5): a 10 MB value is cut, "more" is explicit."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, until, visible_text

from dashboard.screens.job import FIRST_LIMIT, JobScreen
from dashboard.widgets.job_detail import JobDetailView
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

TEN_MB = 10 * 1024 * 1024


async def test_ten_megabytes_of_data_render_cut_with_an_explicit_more(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("import", {"rows": 1})
    # Bigger than the engine accepts: as another client, or an older version, could have written.
    keys = QueueKeys(queue_name)
    await redis.hset(keys.job(job.id), "data", json.dumps({"blob": "x" * TEN_MB}))
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        app.open_job(queue_name, job.id)
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await until(pilot, lambda: screen.detail is not None)
        await pilot.pause(0.1)
        view = screen.query_one(JobDetailView)
        first = len(str(view.content))
        assert first < FIRST_LIMIT * 4  # cut, not ten megabytes of text
        assert "more chars" in str(view.content)
        assert "Help" in visible_text(app)  # the screen and its keys are there
        await pilot.press("m")
        await pilot.pause(0.1)
        assert FIRST_LIMIT * 3 < len(str(view.content)) < FIRST_LIMIT * 16
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobScreen))
