"""A one-line prompt (``g`` asks for a job id, ``c`` for an age): checked before it closes."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the typed text once ``check`` accepts it, or None on escape.

    ``check`` returns an error to show under the input, or None when the text is good.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        label: str,
        *,
        value: str = "",
        placeholder: str = "",
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.label = label
        self.value = value
        self.placeholder = placeholder
        self.check = check

    def compose(self) -> ComposeResult:
        """Label, input and a line for what is wrong with the input."""
        with Vertical(id="prompt-box"):
            yield Static(Text(self.label))
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error")

    def on_mount(self) -> None:
        """Type right away."""
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            self.dismiss(None)
            return
        error = self.check(text) if self.check is not None else None
        if error is not None:
            self.query_one("#prompt-error", Static).update(Text(error, style="red"))
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        """Leave without doing anything."""
        self.dismiss(None)
