"""Job schedulers of one queue, a page at a time; enter opens the newest job one created."""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from dashboard.keymap import SCHEDULERS_KEYS, bindings
from dashboard.model import DashboardSnapshot, SchedulerPage
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.widgets.key_bar import KeyBar
from dashboard.widgets.schedulers_table import SchedulersTable, describe

PAGE_SIZE = 50
REFRESH_S = 1.0
"""Schedulers are re-read at most this often while the screen is shown."""


class SchedulersScreen(DashScreen):
    """Re-reads its page on snapshots (at most once a second): next runs move on."""

    KEYS = SCHEDULERS_KEYS
    BINDINGS = bindings(SCHEDULERS_KEYS)

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue
        self.start = 0
        self.page: SchedulerPage | None = None
        self._read_at = -1e9

    def compose(self) -> ComposeResult:
        """Status bar, title and page line, table, the highlighted scheduler in full, footer."""
        yield self.status_bar()
        yield Static(display_text(f"schedulers of queue {self.queue}", limit=70), id="queue-title")
        yield SchedulersTable(id="schedulers")
        yield Static("", id="scheduler-detail")
        yield KeyBar()

    def on_mount(self) -> None:
        """First read."""
        self.query_one(SchedulersTable).focus()
        self.load()

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """Re-read the page (at most once a second)."""
        super().show_snapshot(snapshot)
        if time.monotonic() - self._read_at >= REFRESH_S:
            self.load()

    @work(exclusive=True, group="schedulers", exit_on_error=False)
    async def load(self) -> None:
        """Read the current page and render it."""
        self._read_at = time.monotonic()
        page = await self.dash.backend.read_schedulers(
            self.dash.reader, self.queue, self.start, PAGE_SIZE
        )
        self.page = page
        self.query_one(SchedulersTable).show(page)
        first = page.start + 1 if page.rows else 0
        title = display_text(f"schedulers of queue {self.queue}", limit=50)
        title.append(f"  {first}-{page.start + len(page.rows)} of {page.total}", style="dim")
        title.append("  enter: open its last job", style="dim")
        self.query_one("#queue-title", Static).update(title)
        self._describe()

    @on(DataTable.RowHighlighted)
    def _describe(self) -> None:
        table = self.query_one(SchedulersTable)
        row = table.selected
        detail = self.query_one("#scheduler-detail", Static)
        if row is None or table.page is None:
            empty = table.page is not None and not table.page.rows
            detail.update(Text("no job schedulers in this queue" if empty else ""))
        else:
            detail.update(describe(row, table.page.now_ms))

    def action_open_last_job(self) -> None:
        """Open the newest job the scheduler under the cursor created."""
        row = self.query_one(SchedulersTable).selected
        if row is None or row.last_job_id is None:
            self.notify("this scheduler has created no job yet", severity="warning")
            return
        self.dash.open_job(self.queue, row.last_job_id)

    def on_data_table_row_selected(self) -> None:
        """Enter on a row opens its last job."""
        self.action_open_last_job()

    def action_page(self, step: int) -> None:
        """Next (1) or previous (-1) page."""
        total = self.page.total if self.page else 0
        start = self.start + step * PAGE_SIZE
        if 0 <= start < max(total, 1):
            self.start = start
            self.load()

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(SchedulersTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_back(self) -> None:
        """Back."""
        self.dismiss()
