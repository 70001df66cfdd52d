"""The progress of a running bulk action: a bar, "1,200 of 10,000", a key to stop it, and at
the end its outcome ("retried 12,400 failed jobs; 8 not retried: 8 now completed").

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
        self.outcome: str | None = None
        """Set when the action ended: shown until the operator closes the modal."""

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
        """E.g. "1,200 of 10,000 · esc/c: stop after this batch", then the outcome."""
        run = self.run
        line = Text(f"{run.done:,} of {run.total:,} · ")
        if self.outcome is not None:
            line.append("stopped\n" if run.done < run.total else "done\n")
            line.append(self.outcome, style="bold")
            line.append("\nenter/esc: close", style="dim")
        elif run.stop_requested:
            line.append("stopping after this batch…", style="bold yellow")
        else:
            line.append("esc/c: stop after this batch")
        return line

    def show_progress(self) -> None:
        """Bar and line from the run's counters."""
        self.query_one(ProgressBar).update(progress=self.run.done)
        self.query_one("#progress-line", Static).update(self.progress_line())

    def finish(self, outcome: str) -> None:
        """The action ended: show how it went (the operator closes the modal)."""
        self.outcome = outcome
        self.show_progress()

    def action_stop(self) -> None:
        """Ask the run to stop before its next batch; once it ended, close."""
        if self.outcome is not None:
            self.dismiss()
            return
        self.run.stop()
        self.show_progress()

    def action_close(self) -> None:
        """Close once the action ended (enter does nothing while it runs)."""
        if self.outcome is not None:
            self.dismiss()
