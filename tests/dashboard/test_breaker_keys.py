"""The circuit breaker in the dashboard at 80x24: a notice at each change (open, half-open,
closed), ``b`` closes it now and ``B`` removes it (confirmed, naming its state)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pilot import SIZE, make_app, notices, until, visible_text
from textual.widgets import Button
from workload import finish_jobs

from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.queue import QueueScreen
from engine import Breaker, Queue

pytestmark = pytest.mark.timeout(60)


async def _confirm(pilot: Any, app: Any) -> str:
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    body = str(app.screen.query_one("#confirm-body").render())
    await pilot.pause(0.4)  # past the debounce
    app.screen.query_one("#confirm", Button).press()
    return body


def _breaker_state(app: Any, name: str) -> str | None:
    queue = app.snapshot.queue(name) if app.snapshot is not None else None
    return queue.breaker if queue is not None else None


async def test_breaker_changes_are_announced_and_overridden(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(Breaker(min_calls=2, cooldown_ms=300, probes=1))
        for i in range(8):
            await queue.add("call", {"i": i})
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await finish_jobs(queue, complete=0, fail=2)  # 2 of 2 failed: it opens
            await until(pilot, lambda: f"{queue_name}: circuit breaker open" in notices(app))
            await asyncio.sleep(0.4)  # past the cool-down: the next take is a probe
            await finish_jobs(queue, complete=1, fail=0)  # the probe succeeds: it closes
            await until(pilot, lambda: "circuit breaker half-open" in notices(app))
            await until(pilot, lambda: "circuit breaker closed" in notices(app))
            state = await queue.get_breaker()
            assert state is not None and state.state == "closed"

            # it opens again; b on the overview closes it, in the operator's name
            await finish_jobs(queue, complete=0, fail=2)
            await until(pilot, lambda: _breaker_state(app, queue_name) == "open")
            await pilot.press("b")
            body = await _confirm(pilot, app)
            assert f"Close the circuit breaker of queue {queue_name} (it is open" in body
            await until(pilot, lambda: "closed the circuit breaker" in notices(app))
            state = await queue.get_breaker()
            assert state is not None and state.state == "closed"
            await until(pilot, lambda: "by operator" in notices(app))

            # B on the queue screen takes it off
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, QueueScreen))
            await pilot.press("B")
            body = await _confirm(pilot, app)
            assert "Remove the circuit breaker of queue" in body and "closed, or none" in body
            await until(pilot, lambda: "removed the circuit breaker" in notices(app))
            assert "queue " + queue_name in visible_text(app)
        assert await queue.get_breaker() is None


async def test_read_only_hides_and_refuses_the_breaker_keys(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.set_breaker(Breaker(min_calls=2, cooldown_ms=600_000, probes=1))
        await queue.add_bulk([("call", {}), ("call", {})])
        await finish_jobs(queue, complete=0, fail=2)
        app = make_app(redis_url, queue_name, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: _breaker_state(app, queue_name) == "open")
            assert not app.screen.check_action("breaker", (False,))
            await pilot.press("b", "B")
            await pilot.pause(0.3)
            assert not isinstance(app.screen, ConfirmScreen)
        state = await queue.get_breaker()
        assert state is not None and state.state == "open"
