"""The whole hostile corpus of RELIABILITY.md 3.5 rendered at 80x24 in the status bar, the
confirmation modal, notices and job logs (Z6): values written into Redis by another client,
shown inert; invalid UTF-8 is shown escaped instead of breaking the read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hostile import CORPUS, FORBIDDEN, TEN_MB_LINE, as_stored, assert_inert
from pilot import SIZE, make_app, notices, until, visible_text
from textual.widgets import Button
from workload import finish_jobs

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.job_detail import JobDetailView
from dashboard.widgets.status_bar import StatusBar
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client that writes bytes as they are (for invalid UTF-8)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_hostile_breaker_reasons_in_the_status_bar(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("send", {})
    meta = QueueKeys(queue_name).meta
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        for value in CORPUS:
            await raw.hset(meta, mapping={"tripped": "open", "breaker_reason": value})
            expected = as_stored(value)

            def shown(expected: str = expected) -> bool:
                row = app.snapshot.queue(queue_name) if app.snapshot else None
                return row is not None and row.breaker_reason == expected

            await until(pilot, shown)
            await pilot.pause(0.05)
            text = assert_inert(app)
            assert "circuit breaker" in text.splitlines()[0]
            # the whole bar, also the part 80 columns cut off, is inert text
            bar = app.screen.query_one(StatusBar).render_line_text()
            assert not FORBIDDEN.intersection(bar.plain)
            assert all("@click" not in str(span.style) for span in bar.spans)
        assert bar.plain.endswith("(e\u0301\u0302 combining)")  # the last one, as typed
        await raw.hset(meta, "breaker_reason", "[@click=app.quit]x[/]")

        def literal() -> bool:
            plain = app.screen.query_one(StatusBar).render_line_text().plain
            return "([@click=app.quit]x[/])" in plain

        await until(pilot, literal)
        assert_inert(app)


async def _hostile_failed_jobs(queue: Queue, raw: aioredis.Redis) -> list[str]:
    """Copies of a real failed job under each hostile id of the corpus, in ``failed``."""
    await queue.add("send", {"to": "ann"}, job_id="model")
    await finish_jobs(queue, complete=0, fail=1)
    keys = QueueKeys(queue.name)
    fields: dict[Any, Any] = await raw.hgetall(keys.job("model"))
    score = await raw.zscore(keys.failed, "model")
    assert score is not None
    ids: list[str] = []
    for value in CORPUS:
        job_id = value if isinstance(value, bytes) else value.encode()
        await raw.hset(keys.job_prefix.encode() + job_id, mapping=fields)
        await raw.zadd(keys.failed, {job_id: score})
        ids.append(as_stored(value))
    await raw.zrem(keys.failed, "model")
    return ids


async def test_hostile_ids_in_the_confirmation_modal_and_the_notices(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        ids = await _hostile_failed_jobs(queue, raw)
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE, notifications=True) as pilot:  # toasts on screen
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            screen = app.screen
            assert isinstance(screen, QueueScreen)
            await pilot.press("5")
            await until(
                pilot, lambda: screen.page is not None and len(screen.page.rows) == len(ids)
            )
            assert_inert(app)
            seen: set[str] = set()
            for _ in ids:
                job_id = screen.selected_job()
                assert job_id is not None
                seen.add(job_id)
                await pilot.press("r")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
                await pilot.pause(0.05)
                text = assert_inert(app)
                assert "Retry failed job" in text
                await pilot.press("escape")
                await until(pilot, lambda: isinstance(app.screen, QueueScreen))
                await pilot.press("j")
            assert seen == set(ids)
            # confirm one: the outcome notice names the hostile id, inert
            await pilot.press("home")
            await pilot.pause(0.05)
            target = screen.selected_job()
            assert target is not None
            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.4)
            app.screen.query_one("#confirm", Button).press()
            await until(
                pilot, lambda: "retried job" in notices(app) or "not retried" in notices(app)
            )
            await until(pilot, lambda: "retried job" in visible_text(app))  # the toast
            assert_inert(app)

            # a failing read's notice carries hostile text too
            async def broken() -> None:
                raise RuntimeError("read failed: " + "".join(as_stored(v) for v in CORPUS[:14]))

            app.run_worker(broken(), exit_on_error=False)
            await until(pilot, lambda: "RuntimeError: read failed" in visible_text(app))
            text = assert_inert(app)
            assert "␛]52;c;" in text or "␛[2J" in text  # shown, made visible
        assert await queue.get_job_state(target) in ("wait", None)


async def test_hostile_log_lines_and_a_ten_megabyte_line(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("send", {})
    logs = QueueKeys(queue_name).logs(job.id)
    await raw.rpush(logs, *CORPUS, TEN_MB_LINE)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        app.open_job(queue_name, job.id)
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await until(pilot, lambda: screen.detail is not None)
        detail = screen.detail
        assert detail is not None and len(detail.logs) == len(CORPUS) + 1
        assert as_stored(b"\xff\xfe") in detail.logs  # its own bytes, the read did not fail
        await pilot.pause(0.1)
        for _ in range(12):  # scroll through every section
            assert_inert(app)
            await pilot.press("pagedown")
            await asyncio.sleep(0.02)
        content = str(screen.query_one(JobDetailView).content)
        assert "more chars" in content and len(content) < 100_000
