"""Dead letters of a dead-letter queue: where each came from, its name, when it failed, its
attempts and why; space marks rows for a replay of several. The reason takes the width left."""

from __future__ import annotations

import time

from rich.text import Text
from textual import events

from dashboard.model import JobPage, JobRow
from dashboard.sanitize import display_text
from dashboard.widgets.format import short_duration
from dashboard.widgets.keyed_table import KeyedTable

MIN_REASON = 12
SCROLLBAR = 2
MARK = "●"


class DeadLettersTable(KeyedTable):
    """Rows keyed by dead-letter id; ``marked`` holds the ids marked for a replay."""

    COLUMNS = (" ", "id", "from", "name", "failed", "tries", "reason")

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.page: JobPage | None = None
        self.marked: dict[str, JobRow] = {}

    @property
    def selected_row(self) -> JobRow | None:
        """The dead letter under the cursor."""
        key = self.selected_key
        if self.page is None or key is None:
            return None
        return next((row for row in self.page.rows if row.id == key), None)

    def show(self, page: JobPage) -> None:
        """Replace the rows; marks stay on the dead letters still on the page."""
        self.page = page
        ids = {row.id for row in page.rows}
        self.marked = {k: v for k, v in self.marked.items() if k in ids}
        self._render_rows()

    def toggle_mark(self) -> None:
        """Mark or unmark the dead letter under the cursor, then move down."""
        row = self.selected_row
        if row is None:
            return
        if self.marked.pop(row.id, None) is None:
            self.marked[row.id] = row
        self._render_rows()
        self.action_cursor_down()

    def forget_marks(self) -> None:
        """Drop every mark (after a replay)."""
        self.marked.clear()
        self._render_rows()

    def on_resize(self, event: events.Resize) -> None:
        """Re-cut the reason column to the new width."""
        if self.page is not None:
            self._render_rows()

    def _render_rows(self) -> None:
        row_index = self.cursor_row
        rows = list(self.page.rows) if self.page is not None else []
        self.clear()
        now_ms = int(time.time() * 1000)
        cells = [self._fixed(row, now_ms) for row in rows]
        used = sum(
            max([len(label)] + [cell.cell_len for cell in column]) + 2 * self.cell_padding
            for label, column in zip(self.COLUMNS, zip(*cells, strict=True), strict=False)
        )
        width = self.size.width or 80
        reason_width = max(MIN_REASON, width - used - 2 * self.cell_padding - SCROLLBAR)
        for row, fixed in zip(rows, cells, strict=True):
            reason = display_text(
                row.failed_reason or "", limit=reason_width, style="red", say_how_much=False
            )
            self.add_row(*fixed, reason, key=row.id)
        if rows:
            self.move_cursor(row=min(row_index, len(rows) - 1))

    def _fixed(self, row: JobRow, now_ms: int) -> list[Text]:
        when = row.finished_on_ms or row.timestamp_ms
        origin = row.origin_queue
        return [
            Text(MARK if row.id in self.marked else " ", style="bold cyan"),
            display_text(row.id, limit=8, say_how_much=False),
            display_text(origin, limit=14, say_how_much=False)
            if origin
            else Text("?", style="red"),
            display_text(row.name, limit=14, say_how_much=False),
            Text(short_duration(max(now_ms - when, 0)) if when else "-"),
            Text(str(row.attempts_made)),
        ]
