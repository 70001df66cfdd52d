"""A page of jobs: id, name, age, attempts and the failure reason; malformed rows flagged."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from dashboard.model import JobPage, JobRow
from dashboard.sanitize import display_text
from dashboard.widgets.format import age

COLUMNS = ("id", "name", "age", "tries", "info")


class JobTable(DataTable[Text]):
    """Rows keyed by job id."""

    def on_mount(self) -> None:
        """Columns and row cursor."""
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label in COLUMNS:
            self.add_column(Text(label, style="bold"), key=label)

    @property
    def selected_job(self) -> str | None:
        """The job id under the cursor."""
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

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
