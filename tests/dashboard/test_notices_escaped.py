"""Text from Redis in notices and prompts is never read as markup (Z6): a dead letter whose id is
hostile markup and that is gone by the time it is replayed, a circuit breaker state that is
hostile, and a scheduler's time zone; at 80x24 against a real server, toasts on screen."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, make_app, notices, until, visible_text

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.schedulers_table import exact
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

HOSTILE_ID = "[/][@click=app.quit]x[/]\x1b[2J"
"""Unbalanced markup (a MarkupError if parsed), a click action, and an escape sequence."""


async def test_a_gone_dead_letter_with_a_hostile_id_is_named_literally(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("x", {})  # the queue exists
    await redis.hset(keys.meta, "dead_letter", "1")  # ... and is a dead-letter queue
    await redis.zadd(keys.failed, {HOSTILE_ID: 1})  # a dead letter whose hash is gone
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter", "5")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        screen = app.screen
        assert isinstance(screen, QueueScreen)
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
        await pilot.press("r")  # replay it: it is read first, and is not there
        await until(pilot, lambda: "no longer exists" in notices(app))
        await pilot.pause(0.2)
        assert app.is_running and isinstance(app.screen, QueueScreen)  # no crash, nothing asked
        (notice,) = [n for n in app._notifications if "no longer exists" in str(n.message)]
        assert not notice.markup
        assert (
            str(notice.message) == "dead letter '[/][@click=app.quit]x[/]\\x1b[2J' no longer exists"
        )
        text = visible_text(app)
        assert "[/][@click=app.quit]x[/]" in text  # the toast shows it as it is
        assert "\x1b" not in text
        assert "Error" not in notices(app)


async def test_a_hostile_breaker_state_is_shown_as_text(
    redis_url: str, queue_name: str, redis: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("x", {})
    await redis.hset(QueueKeys(queue_name).meta, "tripped", "open[/]\x1b]0;owned\x07")
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await pilot.press("b")  # close the breaker: the question names its state
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        body = str(app.screen.query_one("#confirm-body").render())
        assert "(it is open[/]␛]0;owned␇)" in body
        assert "\x1b" not in body and "\x07" not in body


def test_a_hostile_time_zone_is_shown_as_text() -> None:
    shown = exact(0, "[b]Europe/Paris\x1b[2J\u202e")
    assert shown.endswith("[b]Europe/Paris␛[2J<U+202E>")
