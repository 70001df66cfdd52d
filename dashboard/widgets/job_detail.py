"""Every section of one job as inert text: header, data, result, error, stack, logs, raw."""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static

from dashboard.model import JobDetail
from dashboard.sanitize import display_json_field, display_text
from dashboard.widgets.format import age, exact_time

SECTION_STYLE = "bold underline"


class JobDetailView(Static):
    """Renders a ``JobDetail``; ``limit`` caps each section (raised by the "more" key)."""

    def show(self, detail: JobDetail, limit: int) -> None:
        """Render the job, every value through the sanitizer."""
        self.update(render_detail(detail, limit))


def _section(text: Text, title: str, body: Text) -> None:
    text.append(f"\n{title}\n", style=SECTION_STYLE)
    text.append_text(body)
    text.append("\n")


def render_detail(detail: JobDetail, limit: int) -> Text:
    """The whole detail as one ``Text``."""
    raw = dict(detail.raw)
    text = Text(end="")
    text.append("job ", style="bold")
    text.append_text(display_text(detail.id, limit=60))
    text.append("  ")
    text.append_text(display_text(detail.name, limit=60, style="bold"))
    text.append(f"  [{detail.state or 'no state'}]", style="cyan")
    if detail.malformed:
        text.append("\n⚠ malformed job hash: ", style="bold red")
        text.append_text(display_text(detail.malformed_reason or "", limit=200))
        _section(text, "raw fields", _raw_fields(detail, limit))
        if detail.logs:
            _section(
                text, "logs", display_text("\n".join(detail.logs), limit=limit, single_line=False)
            )
        return text
    text.append(f"\nattempts {detail.attempts_made}/{detail.attempts}")
    for label, ms in (
        ("created", detail.timestamp_ms),
        ("processed", detail.processed_on_ms),
        ("finished", detail.finished_on_ms),
    ):
        if ms is not None:  # humanized, and exact beside it
            text.append(f"\n{label:<10}{age(ms) + ' ago':<18}", style="")
            text.append(exact_time(ms), style="dim")
    if detail.worker:
        text.append("\nworker ")
        text.append_text(display_text(detail.worker, limit=40))
    _section(text, "data", display_json_field(raw.get("data"), limit=limit))
    if raw.get("progress"):
        _section(text, "progress", display_json_field(raw.get("progress"), limit=limit))
    if raw.get("returnvalue"):
        _section(text, "return value", display_json_field(raw.get("returnvalue"), limit=limit))
    if detail.failed_reason:
        _section(
            text,
            "failed reason",
            display_text(detail.failed_reason, limit=limit, single_line=False),
        )
    if detail.stacktrace:
        stack = "\n".join(detail.stacktrace)
        _section(text, "stacktrace", display_text(stack, limit=limit, single_line=False))
    if detail.logs:
        _section(text, "logs", display_text("\n".join(detail.logs), limit=limit, single_line=False))
    for title, body in detail.sections:
        _section(text, title, display_text(body, limit=limit, single_line=False))
    # the options as the backend decoded them (BullMQ's short names spelled out), else as stored
    opts = json.dumps(detail.opts) if detail.opts else raw.get("opts")
    _section(text, "options", display_json_field(opts, limit=limit))
    return text


def _raw_fields(detail: JobDetail, limit: int) -> Text:
    body = Text(end="")
    for key, value in detail.raw:
        body.append_text(display_text(key, limit=40, style="bold"))
        body.append(": ")
        body.append_text(display_text(value, limit=limit))
        body.append("\n")
    return body
