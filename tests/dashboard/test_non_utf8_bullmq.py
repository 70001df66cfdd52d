"""A BullMQ queue whose name is not UTF-8, holding failed jobs whose ids and names are not
UTF-8 either (hashes written by hand, as BULLMQ-LAYOUT.md describes them, by a producer that
writes bytes), at 80x24 through Pilot.

The dashboard reads every name back as the same bytes, so the queue is counted, its jobs are
listed and opened, and BullMQ's own scripts (the ``bullmq`` package) retry exactly those jobs:
the queue's keys in Redis afterwards say so. A byte that is not UTF-8 shows as ``\\xff``; the
typed confirmation of a bulk retry takes the queue name as the modal shows it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hostile import as_stored, assert_inert, detail_sections, whole_detail
from pilot import SIZE, notices, until
from textual.pilot import Pilot
from textual.widgets import Button, Input

from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.keys import BullKeys
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.progress import ProgressScreen
from dashboard.screens.queue import QueueScreen

pytestmark = pytest.mark.timeout(120)

FIRST_ID = b"b\xff1"
SECOND_ID = b"b\xfe2"
NAME = b"mail\xff"


def _bytes(text: str) -> bytes:
    """A key as a client that writes bytes names it (``surrogateescape`` reversed)."""
    return text.encode("utf-8", errors="surrogateescape")


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client that writes and reads bytes as they are."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def queue_bytes(raw: aioredis.Redis) -> AsyncIterator[bytes]:
    """A BullMQ queue name no other test uses, ending in a byte that is not UTF-8; its keys
    are deleted afterwards, so no later test that finds BullMQ queues with a strict client
    (the session server is shared) meets its name."""
    name = f"bq-{uuid.uuid4().hex[:10]}-".encode() + b"\xfe"
    yield name
    pattern = b"bull:" + name + b":*"
    keys = [key async for key in raw.scan_iter(match=pattern, count=1_000)]
    if keys:
        await raw.delete(*keys)
    assert not [key async for key in raw.scan_iter(match=b"bull:*\xfe:*", count=1_000)]


async def _failed_jobs(raw: aioredis.Redis, keys: BullKeys) -> None:
    """A BullMQ 6 queue with two failed jobs, both with ids and names that are not UTF-8."""
    now = int((await raw.time())[0]) * 1000
    await raw.hset(_bytes(keys.meta), mapping={"version": "bullmq:6.7.0", "opts.maxLenEvents": 100})
    for index, job_id in enumerate((FIRST_ID, SECOND_ID)):
        job = {
            b"name": NAME,
            b"data": json.dumps({"to": f"user-{index}"}),
            b"opts": json.dumps({"attempts": 1}),
            b"timestamp": now - 5_000,
            b"processedOn": now - 4_000,
            b"finishedOn": now - 3_000 + index,
            b"atm": 1,
            b"ats": 1,
            b"failedReason": b"bounced: \xff",
            b"stacktrace": json.dumps(["Error: bounced"]),
        }
        await raw.hset(_bytes(keys.job(as_stored(job_id))), mapping=job)  # type: ignore[arg-type]
        await raw.zadd(_bytes(keys.state("failed")), {job_id: now - 3_000 + index})


async def _confirm(pilot: Pilot[None], app: DashboardApp, typed: str | None = None) -> str:
    """Wait for the modal, type ``typed`` into it if asked, confirm; what the modal showed."""
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.4)
    text = assert_inert(app)
    if typed is not None:
        app.screen.query_one("#confirm-input", Input).value = typed
        await pilot.pause(0.05)
    button = app.screen.query_one("#confirm", Button)
    assert not button.disabled
    button.press()
    await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
    return text


async def test_a_bullmq_queue_and_jobs_whose_names_are_not_utf8(
    redis_url: str, raw: aioredis.Redis, queue_bytes: bytes, audit_path: Path
) -> None:
    queue = as_stored(queue_bytes)
    shown_queue = queue_bytes[:-1].decode() + "\\xfe"
    keys = BullKeys("bull", queue)
    await _failed_jobs(raw, keys)
    app = DashboardApp(redis_url, BullMQBackend(), queues=[queue], poll_interval=0.2)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await until(pilot, lambda: shown_queue in assert_inert(app))  # counted: its meta found
        await pilot.press("enter", "5")  # the queue, its failed tab
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 2)
        text = assert_inert(app)
        assert "b\\xff1" in text and "b\\xfe2" in text and "mail\\xff" in text

        first = as_stored(FIRST_ID)
        while screen.selected_job() != first:
            await pilot.press("j")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        assert job_screen.detail is not None and job_screen.detail.id == first
        sections = detail_sections(await whole_detail(pilot, app))
        assert "jobb\\xff1mail\\xff[failed]" in sections["header"]
        assert '"to":"user-0"' in sections["data"]
        assert "bounced:\\xff" in sections["failed reason"]

        await pilot.press("r")  # BullMQ's reprocessJob, on this job's own key
        modal = await _confirm(pilot, app)
        assert f"Retry failed job b\\xff1 of queue {shown_queue}?" in modal
        await until(pilot, lambda: "retried job" in notices(app))
        assert_inert(app)
        assert await raw.lrange(_bytes(keys.wait), 0, -1) == [FIRST_ID]
        assert await raw.zrange(_bytes(keys.state("failed")), 0, -1) == [SECOND_ID]

        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
        await pilot.press("R")  # retry all: the queue name typed as the modal shows it
        modal = await _confirm(pilot, app, typed=shown_queue)
        assert shown_queue in modal
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen))
        await until(pilot, lambda: "retried 1" in assert_inert(app))
    assert sorted(await raw.lrange(_bytes(keys.wait), 0, -1)) == sorted([FIRST_ID, SECOND_ID])
    assert await raw.zcard(_bytes(keys.state("failed"))) == 0
    entries = _entries(audit_path)
    assert [e["action"] for e in entries] == ["retry", "retry all"]
    assert entries[0]["queue"] == shown_queue and entries[0]["scope"] == "job 'b\\xff1' (failed)"


def _entries(path: Path) -> list[dict[str, Any]]:
    """The audit log's entries; each line must be valid UTF-8 JSON without lone surrogates."""
    lines = path.read_bytes().decode("utf-8").splitlines()  # strict: raises on a bad byte
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        for value in entry.values():
            if isinstance(value, str):
                value.encode("utf-8")  # strict: a lone surrogate would raise here
    return entries
