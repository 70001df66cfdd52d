"""The progress of a running bulk action: a bar, "1,200 of 10,000", and a key to stop it.

A stop takes effect between batches (each batch is one atomic engine call), so what was done
stays done and the outcome says how many were not attempted.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import ProgressBar, Static

from dashboard.bulk import BulkRun
from dashboard.keymap import PROGRESS_KEYS, bindings


class ProgressScreen(ModalScreen[None]):
    """Shows ``run`` advancing; the app dismisses it when the action ends."""

    KEYS = PROGRESS_KEYS
    BINDINGS = bindings(PROGRESS_KEYS)

    def __init__(self, title: Text, run: BulkRun) -> None:
        super().__init__()
        self.title_text = title
        self.run = run

    def compose(self) -> ComposeResult:
        """Title, bar, count line."""
        with Vertical(id="progress-box"):
            yield Static(self.title_text, id="progress-title")
            yield ProgressBar(total=max(self.run.total, 1), show_eta=False, id="progress-bar")
            yield Static(self.progress_line(), id="progress-line")

    def on_mount(self) -> None:
        """Redraw as the run advances."""
        self.set_interval(0.1, self.show_progress)

    def progress_line(self) -> Text:
        """E.g. "1,200 of 10,000 · esc/c: stop after this batch"."""
        run = self.run
        line = Text(f"{run.done:,} of {run.total:,} · ")
        if run.stop_requested:
            line.append("stopping after this batch…", style="bold yellow")
        else:
            line.append("esc/c: stop after this batch")
        return line

    def show_progress(self) -> None:
        """Bar and line from the run's counters."""
        self.query_one(ProgressBar).update(progress=self.run.done)
        self.query_one("#progress-line", Static).update(self.progress_line())

    def action_stop(self) -> None:
        """Ask the run to stop before its next batch."""
        self.run.stop()
        self.show_progress()
