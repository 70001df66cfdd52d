"""KeyedTable: a DataTable of text rows keyed by an id, with bold column labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


class KeyedTable(DataTable[Text]):
    """Rows keyed by an id (a queue name, a job id), so the cursor can follow its row."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    _shown: dict[str, tuple[Text, ...]] | None = None
    """The rows on screen by key, in order, as ``show_rows`` last put them there."""

    def on_mount(self) -> None:
        """Columns and row cursor."""
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label in self.COLUMNS:
            self.add_column(Text(label, style="bold"), key=label)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        """Measure the new rows (Textual), then drop what was painted at the old widths.

        Textual caches painted cells and lines by an update count, not by column width, and
        measures new rows only when idle: a paint in between (a busy app) would keep showing
        those rows cut to the old widths ("impo" for "import") until the table is resized."""
        before = [column.content_width for column in self.columns.values()]
        super()._update_dimensions(new_rows)
        if before != [column.content_width for column in self.columns.values()]:
            self._update_count += 1
            self.refresh()

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def show_rows(self, rows: Sequence[tuple[str, Sequence[Text]]]) -> None:
        """Show ``(key, cells)`` rows, keeping the cursor on its row's key.

        With the same keys in the same order only the cells that changed are replaced, so a
        live table that is redrawn many times a second does not rebuild its rows (which would
        also lay the whole screen out again)."""
        new = {key: tuple(cells) for key, cells in rows}
        old = self._shown
        self._shown = new
        if old is not None and list(old) == list(new) and self.row_count == len(new):
            for key, cells in new.items():
                for column, before, after in zip(self.COLUMNS, old[key], cells, strict=True):
                    if after != before or after.style != before.style:
                        wider = after.cell_len > before.cell_len
                        self.update_cell(key, column, after, update_width=wider)
            return
        selected = self.selected_key
        self.clear()
        for key, cells in new.items():
            self.add_row(*cells, key=key)
        if selected in new:
            self.move_cursor(row=list(new).index(selected))
