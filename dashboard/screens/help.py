"""The ``?`` help: generated from the same key table as the footer and the palette."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dashboard.keymap import APP_KEYS, Key, key_label, visible


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen it was opened from, and the global ones."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(
        self, screen_keys: tuple[Key, ...], read_only: bool, notes: tuple[str, ...] = ()
    ) -> None:
        super().__init__()
        self.screen_keys = screen_keys
        self.read_only = read_only
        self.notes = notes

    def compose(self) -> ComposeResult:
        """One line per key."""
        text = Text()
        for note in self.notes:  # first: the keys below scroll
            text.append(f"{note}\n", style="italic")
        if self.notes:
            text.append("\n")
        for title, keys in (("This screen", self.screen_keys), ("Everywhere", APP_KEYS)):
            text.append(f"{title}\n", style="bold underline")
            for key in visible(keys, self.read_only):
                text.append(f"  {key_label(key.keys):<14}", style="bold cyan")
                text.append(f"{key.description}\n")
        if self.read_only:
            text.append("\nRead-only: actions that change queues are off.\n", style="yellow")
        with VerticalScroll(id="help-box"):
            yield Static(text)
