"""Stalled and stuck jobs of one queue: lock gone, running too long, stalled events seen."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Footer, Static

from dashboard.keymap import STALLED_KEYS, bindings
from dashboard.model import DashboardSnapshot
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.widgets.active_table import ActiveTable

STUCK_AFTER_MS = 5 * 60_000
ROWS = 100


class StalledScreen(DashScreen):
    """Re-reads the active jobs on every snapshot of its queue (at most one read at a time)."""

    KEYS = STALLED_KEYS
    BINDINGS = bindings(STALLED_KEYS)

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.loaded = False

    def compose(self) -> ComposeResult:
        """Status bar, title, recent stalled events, active jobs, footer."""
        yield self.status_bar()
        yield Static(display_text(f"stalled & stuck: {self.queue}", limit=70), id="queue-title")
        yield Static("", id="stalled-events")
        yield ActiveTable(id="active")
        yield Footer()

    def on_mount(self) -> None:
        """First read."""
        self.query_one(ActiveTable).focus()
        self.load()

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Stalled events seen, then a fresh read of the active jobs."""
        super().show_snapshot(snapshot)
        stalled = [e for e in snapshot.stalled_events if e.queue == self.queue]
        line = Text(f"stalled events seen: {len(stalled)}", style="red" if stalled else "")
        if stalled:
            line.append("  last: job ")
            line.append_text(display_text(stalled[-1].job_id, limit=30))
        self.query_one("#stalled-events", Static).update(line)
        self.load()

    @work(exclusive=True, group="active", exit_on_error=False)
    async def load(self) -> None:
        """Read up to ROWS active jobs, longest-running first."""
        jobs, total = await self.dash.backend.read_active(self.dash.reader, self.queue, 0, ROWS)
        self.query_one(ActiveTable).show(jobs, int(time.time() * 1000), STUCK_AFTER_MS)
        self.loaded = True
        gone = sum(1 for job in jobs if not job.lock_held)
        self.sub_title = f"{total} active, {gone} without lock"

    def action_back(self) -> None:
        """Back."""
        self.dismiss()
