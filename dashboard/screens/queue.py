"""One queue: state tabs 1-8 with counts, and a paged job table (n/N)."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from dashboard.breaker_prompts import confirm_breaker
from dashboard.keymap import QUEUE_KEYS, bindings
from dashboard.model import STATE_ORDER, DashboardSnapshot, JobPage
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.screens.dead_letters import open_dead_letters
from dashboard.screens.flow import FlowScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.counts_bar import CountsBar
from dashboard.widgets.job_table import JobTable
from dashboard.widgets.key_bar import KeyBar

PAGE_SIZE = 50


class FilterInput(Input):
    """The ``/`` box: Enter keeps the filter, Escape clears it; both go back to the table."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False)]

    def action_clear(self) -> None:
        """Drop the filter and hide the box."""
        self.value = ""
        self.display = False
        self.screen.query_one(JobTable).focus()


class QueueScreen(DashScreen):
    """Jobs of one state of one queue, a page at a time."""

    KEYS = QUEUE_KEYS
    BINDINGS = bindings(QUEUE_KEYS)

    def __init__(self, queue: str, state: str = "wait") -> None:
        super().__init__()
        self.queue = queue
        self.state = state
        self.start = 0
        self.page: JobPage | None = None
        self._counts_seen: int | None = None

    def compose(self) -> ComposeResult:
        """Status bar, queue title and tabs, page line, job table, footer."""
        yield self.status_bar()
        yield Static(display_text(f"queue {self.queue}", limit=70), id="queue-title")
        yield CountsBar(id="tabs")
        yield Static("", id="page-line")
        yield JobTable(id="jobs")
        yield FilterInput(placeholder="filter this page: id, name or reason", id="filter")
        yield KeyBar()

    def on_mount(self) -> None:
        """Load the first page."""
        self.query_one(JobTable).focus()
        self.load_page()

    def show_snapshot(self, snapshot: DashboardSnapshot) -> None:
        """New counts; reload the page when the current state's count changed."""
        super().show_snapshot(snapshot)
        queue = snapshot.queue(self.queue)
        if queue is None:
            return
        self.query_one(CountsBar).show(queue.counts, self.state, queue.paused)
        if queue.dead_letter:
            title = display_text(f"queue {self.queue}", limit=40)
            title.append("  dead-letter queue: r/R replay to origin, D lists", style="bold")
            self.query_one("#queue-title", Static).update(title)
        count = queue.counts.get(self.state)
        if self._counts_seen is not None and count != self._counts_seen:
            self.load_page()
        self._counts_seen = count

    @work(exclusive=True, group="page", exit_on_error=False)
    async def load_page(self) -> None:
        """Read the current page (bounded) and show it."""
        page = await self.dash.read_page(self.queue, self.state, self.start, PAGE_SIZE)
        self.page = page
        self.query_one(JobTable).show(page)
        self._update_page_line()

    def _update_page_line(self) -> None:
        page = self.page
        if page is None:
            return
        table = self.query_one(JobTable)
        last = max(1, -(-page.total // PAGE_SIZE))
        first = page.start + 1 if page.rows else 0
        line = Text(
            f"{self.state}: rows {first}-{page.end + 1} of {page.total}"
            f"  page {page.start // PAGE_SIZE + 1}/{last}"
        )
        if table.filter_text:
            line.append(f"  {len(table.shown_rows)} match ", style="bold")
            line.append_text(display_text(table.filter_text, limit=20))
        self.query_one("#page-line", Static).update(line)

    def action_filter(self) -> None:
        """Show the filter box and type into it."""
        box = self.query_one(FilterInput)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(JobTable).set_filter(event.value)
        self._update_page_line()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.query_one(FilterInput)
        box.display = bool(box.value)
        self.query_one(JobTable).focus()

    def shown_state(self) -> str | None:
        """The tab on screen: job keys apply to its state."""
        return self.state

    def selected_job(self) -> str | None:
        """The job id under the cursor."""
        return self.query_one(JobTable).selected_job

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        table = self.query_one(JobTable)
        if direction == "down":
            table.action_cursor_down()
        else:
            table.action_cursor_up()

    def action_show_state(self, index: int) -> None:
        """Switch to state tab ``index`` (0-7)."""
        self.state = STATE_ORDER[index]
        self.refresh_bindings()
        self.start = 0
        self._counts_seen = None
        if self.dash.snapshot is not None:
            self.apply_snapshot(self.dash.snapshot)
        self.load_page()

    def action_page(self, step: int) -> None:
        """Next (1) or previous (-1) page."""
        total = self.page.total if self.page else 0
        start = self.start + step * PAGE_SIZE
        if 0 <= start < max(total, 1):
            self.start = start
            self.load_page()

    def action_open_job(self) -> None:
        """Open the job under the cursor."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.open_job(self.queue, job_id)

    def on_data_table_row_selected(self) -> None:
        """Enter on a row opens it too."""
        self.action_open_job()

    def action_retry_job(self) -> None:
        """Retry the job under the cursor (confirmed)."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.confirm_job_action("retry", self.queue, job_id, self.shown_state())

    def action_discard_job(self) -> None:
        """Discard the job under the cursor (confirmed)."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.confirm_job_action("discard", self.queue, job_id)

    def action_cancel_job(self) -> None:
        """Cancel the waiting or running job under the cursor (confirmed)."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.confirm_job_action("cancel", self.queue, job_id)

    def action_promote_job(self) -> None:
        """Promote the delayed job under the cursor (confirmed)."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.confirm_job_action("promote", self.queue, job_id)

    def action_promote_all(self) -> None:
        """Run every delayed job of this queue now (typed confirmation)."""
        self.dash.confirm_promote_all(self.queue)

    def action_change_priority(self) -> None:
        """Ask for a new priority of the job under the cursor (confirmed)."""
        job_id = self.selected_job()
        if job_id is not None:
            self.dash.confirm_change_priority(self.queue, job_id)

    def action_retry_all(self) -> None:
        """Retry every failed job of this queue (typed confirmation)."""
        self.dash.confirm_retry_all(self.queue)

    def action_toggle_pause(self) -> None:
        """Pause or resume this queue (confirmed)."""
        self.dash.confirm_pause(self.queue)

    def action_clean(self) -> None:
        """Clean old completed (or, on the failed tab, failed) jobs (typed confirmation)."""
        state = "failed" if self.state == "failed" else "completed"
        self.dash.confirm_clean(self.queue, state)

    def action_stalled(self) -> None:
        """Stalled and stuck jobs of this queue."""
        self.app.push_screen(StalledScreen(self.queue))

    def action_workers(self) -> None:
        """Live workers of this queue (``a``: of every queue)."""
        self.app.push_screen(WorkersScreen(self.queue))

    def action_breaker(self, remove: bool) -> None:
        """Close (``b``) or remove (``B``) the queue's circuit breaker (confirmed)."""
        queue = self.queue
        if queue is not None:
            confirm_breaker(self.dash, queue, remove)

    def action_dead_letters(self) -> None:
        """Dead letters of this (or the only) dead-letter queue, to list and replay."""
        open_dead_letters(self.dash, self.queue)

    def action_schedulers(self) -> None:
        """Job schedulers of this queue."""
        self.app.push_screen(SchedulersScreen(self.queue))

    def action_flow(self) -> None:
        """The flow of the job under the cursor, as a tree."""
        job_id = self.selected_job()
        if job_id is not None:
            self.app.push_screen(FlowScreen(self.queue, job_id))

    def action_back(self) -> None:
        """Back to the overview."""
        self.dismiss()
