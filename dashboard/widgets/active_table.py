"""Active jobs with how long they have run and whether their lock is gone (stalled now)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from dashboard.model import ActiveJob
from dashboard.sanitize import display_text
from dashboard.widgets.format import age

COLUMNS = ("id", "name", "active for", "lock", "worker")


class ActiveTable(DataTable[Text]):
    """Rows keyed by job id; a stalled row says "GONE (stalled)", a stuck one "⏱ STUCK"."""

    def on_mount(self) -> None:
        """Columns and row cursor."""
        self.cursor_type = "row"
        for label in COLUMNS:
            self.add_column(Text(label, style="bold"), key=label)

    def show(self, jobs: list[ActiveJob], now_ms: int, stuck_after_ms: int) -> None:
        """Replace the rows."""
        self.clear()
        for job in jobs:
            stuck = now_ms - job.active_since_ms > stuck_after_ms
            lock = Text("held") if job.lock_held else Text("GONE (stalled)", style="bold red")
            running = Text(age(job.active_since_ms, now_ms / 1000))
            if stuck:  # said in words, not by colour alone
                running.append(" ⏱ STUCK", style="bold yellow")
            self.add_row(
                display_text(job.id, limit=14),
                display_text(job.name, limit=18),
                running,
                lock,
                display_text(job.worker or "-", limit=16),
                key=job.id,
            )
