"""The key bar at the bottom of every screen: the screen's keys, the palette's key on the
right, and no widget left behind however often the screens change (Textual's ``Footer`` kept
a widget per key per screen switch alive, which the soak run's tracemalloc twin found)."""

from __future__ import annotations

import gc

import pytest
from pilot import SIZE, make_app, until, visible_text
from textual.pilot import Pilot
from textual.widget import Widget

from dashboard.app import DashboardApp
from dashboard.screens.queue import QueueScreen
from engine.queue import Queue

pytestmark = pytest.mark.timeout(90)


def _live_widgets() -> int:
    gc.collect()
    return sum(isinstance(o, Widget) for o in gc.get_objects())


async def _open_and_close_queue(pilot: Pilot[None], app: DashboardApp) -> None:
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    await pilot.pause(0.05)
    await pilot.press("q")
    await until(pilot, lambda: not isinstance(app.screen, QueueScreen))
    await pilot.pause(0.05)


async def test_the_key_bar_shows_the_screens_keys_and_keeps_no_widget(
    redis_url: str, queue_name: str
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("send", {})
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await until(pilot, lambda: "w Workers" in visible_text(app).splitlines()[-1])
        bottom = visible_text(app).splitlines()[-1]
        assert "? Help" in bottom and bottom.rstrip().endswith("▏^p palette"), bottom
        await _open_and_close_queue(pilot, app)
        before = _live_widgets()
        for _ in range(20):
            await _open_and_close_queue(pilot, app)
        after = _live_widgets()
        # at most one closed queue screen's widgets not collected yet (a page load may still
        # hold it), not a key bar's worth per switch (the Footer left 160 here)
        assert after <= before + 15, (before, after)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, QueueScreen))
        await until(pilot, lambda: "esc Back" in visible_text(app).splitlines()[-1])
