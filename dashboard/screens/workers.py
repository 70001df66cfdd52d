"""Live workers of one queue or of all queues, and the queues that have work and no worker."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from dashboard.backend import FeatureUnavailable
from dashboard.keymap import WORKERS_KEYS, bindings
from dashboard.model import DashboardSnapshot, QueueSnapshot, WorkerRow
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.widgets.key_bar import KeyBar
from dashboard.widgets.workers_table import WorkersTable, describe, unattended, waiting

REFRESH_S = 1.0
"""Heartbeats are re-read at most this often (snapshots can come ten times a second)."""


class WorkersScreen(DashScreen):
    """``a`` switches between the queue it was opened on and every queue."""

    KEYS = WORKERS_KEYS
    BINDINGS = bindings(WORKERS_KEYS)

    def __init__(self, queue: str | None, *, all_queues: bool = False) -> None:
        super().__init__()
        self.queue = queue
        self.all_queues = all_queues or queue is None
        self.live: list[WorkerRow] | None = None
        self._read_at = -1e9

    def compose(self) -> ComposeResult:
        """Status bar, title, the line of unattended queues, the table, what the table cannot
        show of the highlighted worker (its name, the fields its layout does not record),
        footer."""
        yield self.status_bar()
        yield Static("", id="queue-title")
        yield Static("", id="unattended")
        yield WorkersTable(id="workers")
        yield Static("", id="worker-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        """First read."""
        self.query_one(WorkersTable).focus()
        self._title()
        self.load()

    def _scope(self, snapshot: DashboardSnapshot | None) -> list[QueueSnapshot]:
        queues = list(snapshot.queues) if snapshot is not None else []
        if self.all_queues:
            return queues
        return [q for q in queues if q.name == self.queue]

    def _names(self) -> list[str]:
        if not self.all_queues and self.queue is not None:
            return [self.queue]
        snapshot = self.dash.snapshot
        return [q.name for q in snapshot.queues] if snapshot is not None else []

    def _title(self) -> None:
        scope = "all queues" if self.all_queues else f"queue {self.queue}"
        self.query_one("#queue-title", Static).update(display_text(f"workers: {scope}", limit=70))

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Re-read the heartbeats (at most once a second)."""
        super().show_snapshot(snapshot)
        if time.monotonic() - self._read_at >= REFRESH_S:
            self.load()

    @work(exclusive=True, group="workers", exit_on_error=False)
    async def load(self) -> None:
        """Read the live workers of the queues in scope and render them."""
        self._read_at = time.monotonic()
        try:
            workers = await self.dash.backend.read_workers(self.dash.reader, self._names())
        except FeatureUnavailable as exc:  # e.g. CLIENT LIST refused: said, not left blank
            self.query_one("#unattended", Static).update(display_text(str(exc), style="yellow"))
            return
        self.live = workers
        flagged = unattended(self._scope(self.dash.snapshot))
        self.query_one(WorkersTable).show(workers, flagged, int(time.time() * 1000))
        self.query_one("#unattended", Static).update(_summary(workers, flagged))
        self._describe()

    @on(DataTable.RowHighlighted)
    def _describe(self) -> None:
        worker = self.query_one(WorkersTable).selected
        detail = None if worker is None else describe(worker, int(time.time() * 1000))
        line = self.query_one("#worker-detail", Static)
        line.update(detail or "")
        line.display = detail is not None

    def action_toggle_all(self) -> None:
        """Every queue, or only the one the screen was opened on."""
        if self.queue is None:
            self.notify("opened on all queues: select a queue in the overview first")
            return
        self.all_queues = not self.all_queues
        self._title()
        self.load()

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(WorkersTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_back(self) -> None:
        """Back."""
        self.dismiss()


def _summary(workers: list[WorkerRow], flagged: list[QueueSnapshot]) -> Text:
    hosts = len({w.host for w in workers})
    in_flight = [w.in_flight for w in workers if w.in_flight is not None]
    busy = f"{sum(in_flight)} jobs" if len(in_flight) == len(workers) else "jobs"
    text = Text(
        f"{len(workers)} live worker{'s' * (len(workers) != 1)} on {hosts} "
        f"host{'s' * (hosts != 1)}, {busy} in flight"
    )
    if len(in_flight) < len(workers):
        text.append(": n/a", style="dim")
    if flagged:
        text.append("  ⚠ work and no worker: ", style="bold red")
        names = ", ".join(f"{q.name} ({waiting(q)})" for q in flagged)
        text.append_text(display_text(names, limit=60, style="red"))
    return text
