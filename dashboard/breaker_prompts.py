"""Asking before an operator overrides a queue's circuit breaker: ``b`` closes it now (its jobs
run again at once, the failure window starts over), ``B`` takes it off the queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from dashboard.sanitize import display_text

if TYPE_CHECKING:
    from dashboard.app import DashboardApp


def confirm_breaker(app: DashboardApp, queue: str, remove: bool) -> None:
    """Ask, naming the breaker's state now, then close or remove it."""
    snapshot = app.snapshot.queue(queue) if app.snapshot is not None else None
    state = snapshot.breaker if snapshot is not None else None
    now = Text.assemble(" (it is ", display_text(state or "", limit=20))
    if state is None:
        now = Text(" (it is not holding the queue now: closed, or none")
    elif snapshot is not None and snapshot.breaker_reason:
        now.append(": ")
        now.append_text(display_text(snapshot.breaker_reason, limit=60))
    now.append(")")
    if remove:
        body = Text.assemble(
            "Remove the circuit breaker of queue ",
            display_text(queue, limit=40),
            now,
            "? It is closed first; no breaker trips the queue again until one is set.",
        )
        title, label = "Remove circuit breaker", "Remove"
    else:
        body = Text.assemble(
            "Close the circuit breaker of queue ",
            display_text(queue, limit=40),
            now,
            "? Workers take its jobs again at once; the failure window starts over.",
        )
        title, label = "Close circuit breaker", "Close"
    app._ask(title, body, label, lambda: app.actions.breaker(queue, remove))
