"""KeyedTable: a DataTable of text rows keyed by an id, with bold column labels."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widgets import DataTable


class KeyedTable(DataTable[Text]):
    """Rows keyed by an id (a queue name, a job id), so the cursor can follow its row."""

    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def on_mount(self) -> None:
        """Columns and row cursor."""
        self.cursor_type = "row"
        self.zebra_stripes = True
        for label in self.COLUMNS:
            self.add_column(Text(label, style="bold"), key=label)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if self.row_count == 0:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None
