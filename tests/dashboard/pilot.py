"""Driving the dashboard app in tests: make it, wait for a condition, read the screen."""

from __future__ import annotations

from support.screen import SIZE, notices, until, visible_text
from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.queue import QueueScreen


def make_app(url: str, queue: str, read_only: bool = False) -> DashboardApp:
    """An app watching only ``queue``."""
    return DashboardApp(
        url, CorralBackend(), queues=[queue], read_only=read_only, poll_interval=0.2
    )


async def open_first_failed(pilot: Pilot[None], app: DashboardApp, name: str) -> QueueScreen:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(name) is not None)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await pilot.press("5")  # failed tab
    await until(pilot, lambda: screen.page is not None and screen.page.state == "failed")
    return screen


__all__ = ["SIZE", "make_app", "notices", "open_first_failed", "until", "visible_text"]
