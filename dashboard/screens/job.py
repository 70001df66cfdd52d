"""One job in detail, in a scrollable view; actions on it from here too."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer

from dashboard.keymap import JOB_KEYS, bindings
from dashboard.model import JobDetail
from dashboard.screens.base import DashScreen
from dashboard.widgets.job_detail import JobDetailView

FIRST_LIMIT = 4_000
"""Characters per section at first; ``m`` shows four times more each time."""


class JobScreen(DashScreen):
    """Reads the job once when opened, and again after an action on it."""

    KEYS = JOB_KEYS
    BINDINGS = bindings(JOB_KEYS)

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__()
        self.queue = queue
        self.job_id = job_id
        self.limit = FIRST_LIMIT
        self.detail: JobDetail | None = None

    def compose(self) -> ComposeResult:
        """Status bar, the detail in a scroll view, footer."""
        yield self.status_bar()
        with VerticalScroll(id="detail-scroll"):
            yield JobDetailView("loading…", id="detail")
        yield Footer()

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
            view.update(f"job {self.job_id!r} no longer exists")
        else:
            view.show(detail, self.limit)
        self.refresh_bindings()

    def shown_state(self) -> str | None:
        """The job's state when last read: its keys apply to that state."""
        return self.detail.state if self.detail is not None else None

    def action_more(self) -> None:
        """Show more of long values."""
        self.limit *= 4
        if self.detail is not None:
            self.query_one(JobDetailView).show(self.detail, self.limit)

    def action_retry_job(self) -> None:
        """Retry this job (confirmed)."""
        self.dash.confirm_job_action("retry", self.queue, self.job_id)

    def action_discard_job(self) -> None:
        """Discard this job (confirmed)."""
        self.dash.confirm_job_action("discard", self.queue, self.job_id)

    def action_promote_job(self) -> None:
        """Promote this job (confirmed)."""
        self.dash.confirm_job_action("promote", self.queue, self.job_id)

    def action_back(self) -> None:
        """Back to the queue."""
        self.dismiss()
