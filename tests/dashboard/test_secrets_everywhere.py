"""Secrets are redacted in every view, not only ``data.password`` (RELIABILITY.md 3.3, Z4), at
80x24 through Pilot against a real server.

A real worker processes two jobs whose data holds secrets at depth (a password and a token two
levels down, an api key in a list, an Authorization header, a DSN with credentials, an AWS key
id, a PEM private key, ``password=`` in free text); its processor logs secrets, reports them in
its progress, and fails with an error (chained to another) naming a DSN, a bearer token and an
api key, or returns them; the failing one's deduplication id is ``password=...``. A third job,
named after a DSN, is left active with its lock gone, and another client opens the breaker with
a reason naming a DSN and a token. Every view that shows any of that (the overview's alert and
notices, the queue's failed and completed tables, the confirmation modal, both jobs' whole
detail, the stalled screen) is read: no secret appears, not even a piece of one, while the text
around each secret does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hostile import (
    assert_inert,
    detail_sections,
    open_job_screen,
    squeezed,
    toasts_text,
    whole_detail,
)
from pilot import SIZE, make_app, until, visible_text
from support.workers import running_worker, wait_until
from textual.pilot import Pilot
from workload import take_jobs

from dashboard.app import DashboardApp
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.widgets.status_bar import StatusBar
from engine import Job, Queue
from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(120)

PASSWORD = "hunter2-Pw-7f3a9c"
TOKEN = "tok-5b8e2d1f9a0c"
API_KEY = "ak-live-51HxYz8qWv"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
DSN_PASSWORD = "pg-S3cretPass-x9"
DSN = f"postgres://app:{DSN_PASSWORD}@db.internal:5432/orders"
AWS_SECRET = "IOSFODNN7EXAMPLE"
AWS_KEY = f"AKIA{AWS_SECRET}"
PEM_BODY = ("MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM", "Qyuvz8kSdL0mXq2Ww7TbP4nHr")
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----"
COOKIE = "sid-8c1d4f7e2b9a6035"

SECRETS = (PASSWORD, TOKEN, API_KEY, BEARER, DSN_PASSWORD, AWS_SECRET, *PEM_BODY, COOKIE)
PIECE = 8
"""Characters of a secret that, seen anywhere on screen, count as a leak (a cut cell too)."""

DATA = {
    "customer": {"name": "ann", "login": {"password": PASSWORD, "token": TOKEN}},
    "integrations": [{"service": "stripe", "api_key": API_KEY}],
    "request": {"headers": {"Authorization": f"Bearer {BEARER}", "Accept": "text/plain"}},
    "db": {"url": DSN},
    "notes": [f"rotated {AWS_KEY} yesterday", f"login with password={PASSWORD} ok"],
    "deploy": {"key_file": PEM},
}
DSN_SHOWN = "postgres://app:***@db.internal:5432/orders"
MASKED_AWS = f"AKIA{'*' * 16}"
AROUND: dict[str, tuple[str, ...]] = {
    "header": (f"sync {DSN_SHOWN}",),  # the name
    "data": (
        '"name": "ann"',
        f'"password": "•••• ({len(PASSWORD)} chars)"',
        f'"token": "•••• ({len(TOKEN)} chars)"',
        '"service": "stripe"',
        f'"api_key": "•••• ({len(API_KEY)} chars)"',
        '"Accept": "text/plain"',
        f'"url": "{DSN_SHOWN}"',
        f"rotated {MASKED_AWS} yesterday",
        "login with password=*** ok",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END RSA PRIVATE KEY-----",
    ),
    "progress": ('"step": "upload"', "sent Bearer ***"),
    "logs": (
        f"connecting with password=*** to {DSN_SHOWN}",
        "GET /v1 Authorization:",
        f"aws key {MASKED_AWS} in use",
        "-----BEGIN RSA PRIVATE KEY-----",
    ),
}
"""The text around each secret, per section of the job detail, that is still shown."""
FAILED_AROUND: dict[str, tuple[str, ...]] = {
    "failed reason": (f"ConnectionError: could not reach {DSN_SHOWN} with Authorization:",),
    "stacktrace": (
        "OSError: connect failed: dsn=***",
        "The above exception was the direct cause",
        f"ConnectionError: could not reach {DSN_SHOWN}",
    ),
    "options": ('"id": "password=***"',),
}
COMPLETED_AROUND: dict[str, tuple[str, ...]] = {
    "return value": (
        f'"cookie": "•••• ({len(COOKIE)} chars)"',
        "https://hook:***@hooks.example/cb",
        f'"summary": "api_key=*** and {MASKED_AWS}"',
    ),
    "options": ('"attempts": 1',),
}


def pieces(secret: str) -> Iterator[str]:
    """Every ``PIECE``-character run of ``secret``."""
    for start in range(len(secret) - PIECE + 1):
        yield secret[start : start + PIECE]


def assert_no_secret(text: str) -> None:
    """No secret, whole or in part, in ``text`` (read with its whitespace, and without it)."""
    for seen in (text, squeezed(text)):
        for secret in SECRETS:
            leaked = [piece for piece in pieces(secret) if piece in seen]
            assert not leaked, f"{secret!r} leaked: {leaked}"


def check_screen(app: DashboardApp) -> str:
    """The screen is inert and shows no secret, notices and the whole status bar included."""
    text = assert_inert(app)
    assert_no_secret(text)
    assert_no_secret(" ".join(str(n.message) for n in app._notifications))
    for bar in app.screen.query(StatusBar):
        assert_no_secret(bar.render_line_text().plain)
    return text


async def _leaky(job: Job) -> Any:
    """A processor that puts secrets everywhere a job keeps text."""
    await job.log(f"connecting with password={PASSWORD} to {DSN}")
    await job.log(f"GET /v1 Authorization: Bearer {BEARER}")
    await job.log(f"aws key {AWS_KEY} in use")
    await job.log(PEM)
    await job.update_progress(
        {"step": "upload", "auth": {"token": TOKEN}, "note": f"sent Bearer {BEARER}"}
    )
    if job.data["fail"]:
        try:
            raise OSError(f"connect failed: dsn={DSN} api_key={API_KEY}")
        except OSError as exc:
            message = f"could not reach {DSN} with Authorization: Bearer {BEARER}"
            raise ConnectionError(message) from exc
    return {
        "browser": {"cookie": COOKIE},
        "token": TOKEN,
        "callback": f"https://hook:{PASSWORD}@hooks.example/cb",
        "summary": f"api_key={API_KEY} and {AWS_KEY}",
        "pem": PEM,
    }


async def _leaky_jobs(queue: Queue, url: str) -> tuple[str, str, str]:
    """A failed and a completed job full of secrets, by a real worker, and an active one named
    after a DSN whose worker died (lock gone): their ids."""
    failing = await queue.add(
        f"sync {DSN}", {**DATA, "fail": True}, deduplication={"id": f"password={PASSWORD}"}
    )
    returning = await queue.add(f"sync {DSN}", {**DATA, "fail": False})
    async with running_worker(queue.name, _leaky, url):

        async def both_done() -> bool:
            counts = await queue.get_counts("completed", "failed")
            return counts["completed"] + counts["failed"] == 2

        await wait_until(both_done, within=20)
    await queue.add(f"import {DSN}", {"token": TOKEN})
    (stalled,) = await take_jobs(queue, 1, 60_000)
    return failing.id, returning.id, stalled


async def _tab(pilot: Pilot[None], screen: QueueScreen, key: str, state: str) -> None:
    await pilot.press(key)
    await until(pilot, lambda: screen.page is not None and screen.page.state == state)
    await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
    await pilot.pause(0.1)


async def test_secrets_are_redacted_in_every_view(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        failed, completed, stalled = await _leaky_jobs(queue, redis_url)
    await redis.delete(keys.lock(stalled))
    reason = f"{DSN} token={TOKEN}"  # the alert is cut inside the password: still masked
    await redis.hset(keys.meta, mapping={"tripped": "open", "breaker_reason": reason})
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        # the overview: the alert in the status bar, the breaker's notice as a toast
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        # the event goes in once the tail follows the stream: one added before its first read
        # is behind the id it starts from
        await until(pilot, lambda: queue_name in app.monitor.tail.last_ids)
        await redis.xadd(
            keys.events, {"event": "breaker", "state": "open", "reason": reason, "by": "ops"}
        )
        await until(pilot, lambda: "circuitbreakeropen" in toasts_text(app))
        check_screen(app)
        toast = toasts_text(app)
        assert squeezed("(postgres://app:***@db.internal:5432/orders") in toast
        assert "token=***" in toast
        bar = app.screen.query_one(StatusBar).render_line_text().plain
        assert "circuit breaker open (postgres://app:***" in bar
        app.clear_notifications()

        # the queue: failed and completed tables, the retry question
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await _tab(pilot, screen, "5", "failed")
        text = check_screen(app)
        assert "sync postgres://a" in text and "ConnectionError: could not" in text
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.pause(0.05)
        assert f"Retry failed job {failed} of queue" in check_screen(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await _tab(pilot, screen, "6", "completed")
        assert "sync postgres://a" in check_screen(app)
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, OverviewScreen))

        # each job's whole detail
        for job_id, around in ((failed, FAILED_AROUND), (completed, COMPLETED_AROUND)):
            await open_job_screen(pilot, app, queue_name, job_id)
            detail = await whole_detail(pilot, app)  # every page checked inert
            assert_no_secret(detail)
            sections = detail_sections(detail)
            wanted = {**AROUND, **around}
            assert set(sections) == set(wanted), sections
            for title, texts in wanted.items():
                for text in texts:
                    assert squeezed(text) in sections[title], (title, text, sections[title])
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, OverviewScreen))

        # the stalled screen: the active job named after a DSN, its lock gone
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
        await until(pilot, lambda: "1 active, 1 without lock" in visible_text(app))
        assert "import postgres:/" in check_screen(app)

        # a notice naming a DSN (a read that failed)
        async def broken() -> None:
            raise RuntimeError(f"read failed at {DSN} password={PASSWORD}")

        app.run_worker(broken(), exit_on_error=False)
        await until(pilot, lambda: "RuntimeError:readfailed" in toasts_text(app))
        await pilot.pause(0.05)
        check_screen(app)
        assert squeezed("read failed at postgres://app:***@db.internal") in toasts_text(app)
