"""A page of jobs: id, name, age, attempts, progress and the failure reason; malformed rows
flagged.

The reason column takes whatever width the other columns leave, so the table never scrolls
sideways at 80 columns; ``/`` narrows the rows shown to those matching a filter.
"""

from __future__ import annotations

from rich.text import Text
from textual import events

from dashboard.model import JobPage, JobRow
from dashboard.sanitize import display_text, escaped
from dashboard.widgets.format import age, progress_cell
from dashboard.widgets.keyed_table import KeyedTable

MIN_INFO = 12
"""The reason column never gets narrower than this, even in a very small terminal."""
SCROLLBAR = 2


class JobTable(KeyedTable):
    """Rows keyed by job id."""

    COLUMNS = ("id", "name", "age", "tries", "prog", "info")

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.page: JobPage | None = None
        self.filter_text = ""

    @property
    def selected_job(self) -> str | None:
        """The job id under the cursor."""
        return self.selected_key

    @property
    def shown_rows(self) -> list[JobRow]:
        """The rows of the page that pass the filter (all of them without one)."""
        if self.page is None:
            return []
        return [job for job in self.page.rows if matches(job, self.filter_text)]

    def show(self, page: JobPage) -> None:
        """Replace the rows, keeping the cursor on the same index."""
        self.page = page
        self._render_rows()

    def set_filter(self, text: str) -> None:
        """Show only the rows whose id, name or reason contain ``text`` (case-insensitive)."""
        self.filter_text = text
        self._render_rows()

    def on_resize(self, event: events.Resize) -> None:
        """Re-cut the reason column to the new width."""
        if self.page is not None:
            self._render_rows()

    def _render_rows(self) -> None:
        row = self.cursor_row
        rows = self.shown_rows
        self.clear()
        cells = [_fixed_cells(job) for job in rows]
        used = sum(
            max([len(label)] + [cell.cell_len for cell in column]) + 2 * self.cell_padding
            for label, column in zip(self.COLUMNS, zip(*cells, strict=True), strict=False)
        )
        width = self.size.width or 80
        info_width = max(MIN_INFO, width - used - 2 * self.cell_padding - SCROLLBAR)
        for job, fixed in zip(rows, cells, strict=True):
            info = display_text(
                job.failed_reason or "", limit=info_width, style="red", say_how_much=False
            )
            self.add_row(*fixed, info, key=job.id)
        if rows:
            self.move_cursor(row=min(row, len(rows) - 1))


def matches(job: JobRow, text: str) -> bool:
    """True if ``text`` is empty or found in the job's id, name or failure reason (a byte
    that is not UTF-8 matched as it is shown: ``\\xff``)."""
    if not text:
        return True
    needle = text.casefold()
    return any(
        needle in escaped(field or "").casefold() for field in (job.id, job.name, job.failed_reason)
    )


def _fixed_cells(job: JobRow) -> list[Text]:
    if job.malformed:
        name = Text("⚠ malformed ", style="bold red")
        name.append_text(display_text(job.name, limit=8, say_how_much=False))
    else:
        name = display_text(job.name, limit=20, say_how_much=False)
    when = job.finished_on_ms or job.timestamp_ms
    return [
        display_text(job.id, limit=12, say_how_much=False),
        name,
        Text(age(when)),
        Text(f"{job.attempts_made}/{job.attempts}"),
        Text(progress_cell(job.progress)),
    ]
