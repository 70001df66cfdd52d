"""One job in detail, in a scrollable view; actions on it from here too.

Long values are paged, not grown: ``m`` shows the next window of each long section and ``M``
the one before, so every render costs one window whatever the job's size (D5).
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from dashboard.keymap import JOB_KEYS, bindings
from dashboard.model import JobDetail, JobLinks
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.screens.flow import FlowScreen
from dashboard.widgets.job_detail import JobDetailView, Section, detail_sections, parts
from dashboard.widgets.key_bar import KeyBar
from dashboard.widgets.links_table import LinksTable, blocked_line, links_summary

LINKED_CHILDREN = 20
"""Children of a flow's parent listed on its job screen (``t`` draws the whole flow)."""


class JobScreen(DashScreen):
    """Reads the job once when opened, and again after an action on it."""

    KEYS = JOB_KEYS
    BINDINGS = bindings(JOB_KEYS)

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__()
        self.queue = queue
        self.job_id = job_id
        self.part = 0
        """The window of each long section on screen (0: the first)."""
        self.sections: tuple[Section, ...] = ()
        self.detail: JobDetail | None = None
        self.links: JobLinks | None = None

    def compose(self) -> ComposeResult:
        """Status bar, the job's parent and children (in a flow), the detail, footer."""
        yield self.status_bar()
        yield Static("", id="links-line")
        yield Static("", id="blocked-line")
        yield LinksTable(id="links")
        with VerticalScroll(id="detail-scroll"):
            yield JobDetailView("loading…", id="detail")
        yield KeyBar()

    def on_mount(self) -> None:
        """Load the job."""
        self.query_one("#detail-scroll").focus()
        self.load()

    @work(exclusive=True, group="job", exit_on_error=False)
    async def load(self) -> None:
        """Read the job and render it."""
        detail = await self.dash.read_job(self.queue, self.job_id)
        self.detail = detail
        view = self.query_one(JobDetailView)
        if detail is None:
            view.update(
                Text.assemble(
                    "no job ",
                    display_text(self.job_id, limit=60),
                    " in queue ",
                    display_text(self.queue, limit=60),
                    " (it never existed, or was removed)",
                )
            )
        else:
            self.sections = detail_sections(detail)
            self.part = min(self.part, parts(self.sections) - 1)
            view.show(detail, self.sections, self.part)
        self.refresh_bindings()
        self.links = await self.dash.backend.read_job_links(
            self.dash.reader, self.queue, self.job_id, LINKED_CHILDREN
        )
        table = self.query_one(LinksTable)
        line = self.query_one("#links-line", Static)
        if self.links is not None:
            table.show(self.links)
            line.update(links_summary(self.links))
        table.display = line.display = bool(table.row_count)
        blocked = blocked_line(self.links) if self.links is not None else None
        self.query_one("#blocked-line", Static).update(blocked or "")
        self.query_one("#blocked-line", Static).display = blocked is not None

    def shown_state(self) -> str | None:
        """The job's state when last read: its keys apply to that state."""
        return self.detail.state if self.detail is not None else None

    def action_more(self) -> None:
        """The next window of each long value."""
        self._show_part(self.part + 1)

    def action_less(self) -> None:
        """The window before."""
        self._show_part(self.part - 1)

    def _show_part(self, part: int) -> None:
        if self.detail is None:
            return
        last = parts(self.sections) - 1
        if not 0 <= part <= last:
            where = "first" if part < 0 else "last"
            self.notify(f"the {where} part of the longest value is shown", markup=False)
            return
        self.part = part
        self.query_one(JobDetailView).show(self.detail, self.sections, part)
        self.query_one("#detail-scroll", VerticalScroll).scroll_home(animate=False)

    def action_retry_job(self) -> None:
        """Retry this job (confirmed)."""
        self.dash.confirm_job_action("retry", self.queue, self.job_id, self.shown_state())

    def action_discard_job(self) -> None:
        """Discard this job (confirmed)."""
        self.dash.confirm_job_action("discard", self.queue, self.job_id)

    def action_cancel_job(self) -> None:
        """Cancel this job if it waits or runs (confirmed)."""
        self.dash.confirm_job_action("cancel", self.queue, self.job_id)

    def action_promote_job(self) -> None:
        """Promote this job (confirmed)."""
        self.dash.confirm_job_action("promote", self.queue, self.job_id)

    def action_change_priority(self) -> None:
        """Ask for a new priority of this job (confirmed)."""
        self.dash.confirm_change_priority(self.queue, self.job_id)

    def action_flow(self) -> None:
        """Draw the flow this job belongs to."""
        self.app.push_screen(FlowScreen(self.queue, self.job_id))

    def action_open_parent(self) -> None:
        """Open the parent job (in a flow)."""
        parent = self.links.parent if self.links is not None else None
        if parent is None:
            self.notify("this job has no parent", severity="warning")
        else:
            self.dash.open_job(parent.queue, parent.id)

    def action_open_link(self) -> None:
        """Open the parent or child under the links table's cursor."""
        link = self.query_one(LinksTable).selected_link
        if link is not None:
            self.dash.open_job(link.queue, link.id)

    def on_data_table_row_selected(self) -> None:
        """Enter on a row of the links table opens that job."""
        self.action_open_link()

    def action_back(self) -> None:
        """Back to the queue."""
        self.dismiss()
