"""A confirmation modal: Cancel has the focus, Confirm ignores presses for 300 ms; escape or
``n`` leaves it.

With ``typed`` the user must also type that text (the queue name) for bulk actions; a name
holding bytes that are not UTF-8 is typed as the modal shows it (``\\xff`` for each such byte).
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from dashboard.sanitize import escaped

DEBOUNCE_S = 0.3


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on an explicit, deliberate confirmation."""

    BINDINGS = [Binding("escape,n", "cancel", "Cancel")]  # n: typed into the name box instead

    def __init__(
        self, title: str, body: Text, confirm_label: str, typed: str | None = None
    ) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label
        self.typed = typed
        self._armed = False

    def compose(self) -> ComposeResult:
        """Title, the exact scope, an optional typed check, and the buttons."""
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text, style="bold"), id="confirm-title")
            yield Static(self.body, id="confirm-body")
            if self.typed is not None:
                yield Static(Text("Type the queue name to confirm:"), id="confirm-hint")
                yield Input(placeholder="queue name", id="confirm-input")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error", disabled=True)

    def on_mount(self) -> None:
        """Cancel first; arm the confirm button after the debounce."""
        self.query_one("#cancel", Button).focus()
        self.set_timer(DEBOUNCE_S, self._arm)

    def _arm(self) -> None:
        self._armed = True
        self._update_button()

    def _update_button(self) -> None:
        ok = self._armed
        if self.typed is not None:
            value = self.query_one("#confirm-input", Input).value
            ok = ok and value in (self.typed, escaped(self.typed))
        self.query_one("#confirm", Button).disabled = not ok

    @on(Input.Changed)
    def _typed(self) -> None:
        self._update_button()

    @on(Button.Pressed, "#confirm")
    def _confirm(self) -> None:
        if not self.query_one("#confirm", Button).disabled:
            self.dismiss(True)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Leave without doing anything."""
        self.dismiss(False)
