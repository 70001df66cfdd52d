"""Driving the dashboard app in tests: make it, wait for a condition, read the screen."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.pilot import Pilot

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.screens.queue import QueueScreen

SIZE = (80, 24)
"""The terminal every Pilot test runs in: what an SSH session on a worker host gives."""


def make_app(url: str, queue: str, read_only: bool = False) -> DashboardApp:
    """An app watching only ``queue``."""
    return DashboardApp(
        url, CorralBackend(), queues=[queue], read_only=read_only, poll_interval=0.2
    )


async def until(pilot: Pilot[None], check: Callable[[], bool]) -> None:
    """Let the app run until ``check()`` holds (within 10 s)."""
    async with asyncio.timeout(10):
        while not check():
            await pilot.pause(0.05)


def visible_text(app: DashboardApp) -> str:
    """What the terminal shows, line by line, as plain text."""
    lines = []
    for y in range(app.size.height):
        strip = app.screen._compositor.render_strips()[y]  # type: ignore[attr-defined]
        lines.append(strip.text)
    return "\n".join(lines)


def notices(app: DashboardApp) -> str:
    return " ".join(str(n.message) for n in app._notifications)


async def open_first_failed(pilot: Pilot[None], app: DashboardApp, name: str) -> QueueScreen:
    await until(pilot, lambda: app.snapshot is not None and app.snapshot.queue(name) is not None)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await pilot.press("5")  # failed tab
    await until(pilot, lambda: screen.page is not None and screen.page.state == "failed")
    return screen
