"""Stalled and stuck jobs of one queue: lock gone (stalled now), running longer than the stuck
threshold (``T`` sets it), the newest stalled events, and every queue with waiting jobs and no
live worker."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from dashboard.durations import describe_age, parse_age, stuck_error
from dashboard.keymap import STALLED_KEYS, bindings
from dashboard.model import DashboardSnapshot
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.widgets.active_table import ActiveTable
from dashboard.widgets.key_bar import KeyBar
from dashboard.widgets.stalled_events import StalledEvents

STUCK_AFTER_MS = 5 * 60_000
"""Default stuck threshold (``corral dash --stuck-after`` and ``T`` change it)."""
ROWS = 100


def unattended(snapshot: DashboardSnapshot) -> Text:
    """Queues with jobs ready to run, not paused, and no live worker; empty if none."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    for queue in snapshot.queues:
        ready = queue.counts.wait + queue.counts.prioritized
        if queue.workers == 0 and ready and not queue.paused:
            text.append(", " if text.plain else "⚠ no live worker: ", style="bold red")
            text.append_text(display_text(queue.name, limit=24))
            text.append(f" ({ready:,} waiting)")
    return text


class StalledScreen(DashScreen):
    """Re-reads the active jobs on every snapshot of its queue (at most one read at a time)."""

    KEYS = STALLED_KEYS
    BINDINGS = bindings(STALLED_KEYS)

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.loaded = False

    def compose(self) -> ComposeResult:
        """Status bar, title, threshold, queues without workers, stalled events, active jobs."""
        yield self.status_bar()
        yield Static(display_text(f"stalled & stuck: {self.queue}", limit=70), id="queue-title")
        yield Static("", id="stuck-line")
        yield Static("", id="no-workers")
        yield StalledEvents(id="stalled-events")
        yield ActiveTable(id="active")
        yield KeyBar()

    def on_mount(self) -> None:
        """First read."""
        self.query_one(ActiveTable).focus()
        self._show_threshold()
        self.load()

    def _show_threshold(self, gone: int = 0, total: int | None = None) -> None:
        line = Text(f"stuck: active longer than {describe_age(self.dash.stuck_after_ms)}")
        line.append("  (T changes it)", style="dim")
        if total is not None:
            line.append(f"  ·  {total} active, {gone} without lock")
        self.query_one("#stuck-line", Static).update(line)

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Queues without workers and stalled events, then a fresh read of the active jobs."""
        super().show_snapshot(snapshot)
        missing = unattended(snapshot)
        box = self.query_one("#no-workers", Static)
        box.update(missing)
        box.display = bool(missing.plain)
        stalled = [e for e in snapshot.stalled_events if e.queue == self.queue]
        self.query_one(StalledEvents).show(stalled)
        self.load()

    @work(exclusive=True, group="active", exit_on_error=False)
    async def load(self) -> None:
        """Read up to ROWS active jobs, longest-running first."""
        jobs, total = await self.dash.backend.read_active(self.dash.reader, self.queue, 0, ROWS)
        now_ms = int(time.time() * 1000)
        self.query_one(ActiveTable).show(jobs, now_ms, self.dash.stuck_after_ms)
        self.loaded = True
        gone = sum(1 for job in jobs if not job.lock_held)
        self._show_threshold(gone, total)

    def action_set_stuck_after(self) -> None:
        """Ask for a new stuck threshold (an age such as 90s or 10m)."""

        def answered(text: str | None) -> None:
            if text is not None:
                self.dash.stuck_after_ms = parse_age(text)
                self._show_threshold()
                self.load()

        current = f"{self.dash.stuck_after_ms // 1000}s"
        label = "A job active longer than this is stuck (90s, 5m, 2h):"
        self.app.push_screen(PromptScreen(label, value=current, check=stuck_error), answered)

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(ActiveTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_back(self) -> None:
        """Back."""
        self.dismiss()
