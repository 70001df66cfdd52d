"""Reading a Textual app in Pilot tests: wait for a condition, and what the terminal shows."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from textual.app import App
from textual.pilot import Pilot

SIZE = (80, 24)
"""The terminal every Pilot test runs in: what an SSH session on a worker host gives."""


async def until(pilot: Pilot[None], check: Callable[[], bool], within: float = 30) -> None:
    """Let the app run until ``check()`` holds (within ``within`` seconds)."""
    async with asyncio.timeout(within):
        while not check():
            await pilot.pause(0.05)


def visible_text(app: App[None]) -> str:
    """What the terminal shows, line by line, as plain text."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips[: app.size.height])


def notices(app: App[None]) -> str:
    """The messages of the notifications on screen, in one line."""
    return " ".join(str(n.message) for n in app._notifications)
