"""A one-line prompt for a job id (``g``)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class GotoScreen(ModalScreen[str | None]):
    """Dismisses with the typed id, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, queue: str) -> None:
        super().__init__()
        self.queue = queue

    def compose(self) -> ComposeResult:
        """Label and input."""
        with Vertical(id="goto-box"):
            yield Static("Job id:")
            yield Input(id="goto-input")

    def on_mount(self) -> None:
        """Type right away."""
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        """Leave without opening anything."""
        self.dismiss(None)
