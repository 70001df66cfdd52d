"""A page of jobs: id, name, age, attempts and the failure reason; malformed rows flagged."""

from __future__ import annotations

from rich.text import Text

from dashboard.model import JobPage, JobRow
from dashboard.sanitize import display_text
from dashboard.widgets.format import age
from dashboard.widgets.keyed_table import KeyedTable


class JobTable(KeyedTable):
    """Rows keyed by job id."""

    COLUMNS = ("id", "name", "age", "tries", "info")

    @property
    def selected_job(self) -> str | None:
        """The job id under the cursor."""
        return self.selected_key

    def show(self, page: JobPage) -> None:
        """Replace the rows, keeping the cursor on the same index."""
        row = self.cursor_row
        self.clear()
        for job in page.rows:
            self.add_row(*self._cells(job), key=job.id)
        if page.rows:
            self.move_cursor(row=min(row, len(page.rows) - 1))

    @staticmethod
    def _cells(job: JobRow) -> list[Text]:
        if job.malformed:
            name = Text("⚠ malformed ", style="bold red")
            name.append_text(display_text(job.name, limit=12))
        else:
            name = display_text(job.name, limit=20)
        when = job.finished_on_ms or job.timestamp_ms
        return [
            display_text(job.id, limit=14),
            name,
            Text(age(when)),
            Text(f"{job.attempts_made}/{job.attempts}"),
            display_text(job.failed_reason or "", limit=40, style="red"),
        ]
