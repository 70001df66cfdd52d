"""Every section of one job as inert text: header, data, result, error, stack, logs, raw.

A long value is shown a window (``WINDOW`` characters) at a time: part ``n`` of every long
section, with a marker saying which part of how many, so each render costs the same however
large the job is (D5). The sections' whole texts are built once per read of the job
(``detail_sections``); rendering a part only cuts and redacts its window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from dashboard.model import JobDetail
from dashboard.sanitize import TRUNCATED_STYLE, display_text, field_text
from dashboard.widgets.format import age, exact_time

SECTION_STYLE = "bold underline"
WINDOW = 4_000
"""Characters of a long value shown at once; the "more" key shows the next window."""


@dataclass(frozen=True, slots=True)
class Section:
    """One titled value of a job, as the whole plain text it is paged through."""

    title: str
    text: str
    field: bool = False
    """A raw field of a malformed hash: shown as ``name: value`` on one line."""


def parts_of(text: str) -> int:
    """How many windows ``text`` takes (at least one)."""
    return max(1, -(-len(text) // WINDOW))


def detail_sections(detail: JobDetail) -> tuple[Section, ...]:
    """The job's long values, in the order shown; JSON fields parsed and masked by key once."""
    raw = dict(detail.raw)
    if detail.malformed:
        fields = tuple(Section(key, value, field=True) for key, value in detail.raw)
        logs = (Section("logs", "\n".join(detail.logs)),) if detail.logs else ()
        return fields + logs
    sections = [Section("data", field_text(raw.get("data")))]
    if raw.get("progress"):
        sections.append(Section("progress", field_text(raw.get("progress"))))
    if raw.get("returnvalue"):
        sections.append(Section("return value", field_text(raw.get("returnvalue"))))
    if detail.failed_reason:
        sections.append(Section("failed reason", detail.failed_reason))
    if detail.stacktrace:
        sections.append(Section("stacktrace", "\n".join(detail.stacktrace)))
    if detail.logs:
        sections.append(Section("logs", "\n".join(detail.logs)))
    sections.extend(Section(title, body) for title, body in detail.sections)
    # the options as the backend decoded them (BullMQ's short names spelled out), else as stored
    opts = json.dumps(detail.opts) if detail.opts else raw.get("opts")
    sections.append(Section("options", field_text(opts)))
    return tuple(sections)


def parts(sections: tuple[Section, ...]) -> int:
    """Windows of the longest section: how far the "more" key can go."""
    return max((parts_of(section.text) for section in sections), default=1)


class JobDetailView(Static):
    """Renders a ``JobDetail``, one window (``part``) of each long section."""

    def show(self, detail: JobDetail, sections: tuple[Section, ...], part: int) -> None:
        """Render the job, every value through the sanitizer."""
        self.update(render_detail(detail, sections, part))


def _window(section: Section, part: int) -> tuple[Text, Text]:
    """The section's part ``part`` (its last one if it has fewer) and the marker for its title
    ("part 2 of 2,622: chars 4,001-8,000 of 10,485,770"), empty for a short value."""
    count = parts_of(section.text)
    shown = min(part, count - 1)
    body = display_text(
        section.text, limit=WINDOW, offset=shown * WINDOW, single_line=section.field
    )
    if count == 1:
        return body, Text("")
    first = shown * WINDOW + 1
    last = min(len(section.text), (shown + 1) * WINDOW)
    marker = Text(
        f"  part {shown + 1:,} of {count:,}: chars {first:,}-{last:,} of {len(section.text):,}"
        f" (m: next, M: back)",
        style=TRUNCATED_STYLE,
    )
    return body, marker


def _section(text: Text, section: Section, part: int) -> None:
    body, marker = _window(section, part)
    text.append(f"\n{section.title}", style=SECTION_STYLE)
    text.append_text(marker)
    text.append("\n")
    text.append_text(body)
    text.append("\n")


def render_detail(detail: JobDetail, sections: tuple[Section, ...], part: int = 0) -> Text:
    """The whole detail as one ``Text``: the header, then window ``part`` of each section."""
    text = Text(end="")
    text.append("job ", style="bold")
    text.append_text(display_text(detail.id, limit=60))
    text.append("  ")
    text.append_text(display_text(detail.name, limit=60, style="bold"))
    text.append(f"  [{detail.state or 'no state'}]", style="cyan")
    if detail.malformed:
        text.append("\n⚠ malformed job hash: ", style="bold red")
        text.append_text(display_text(detail.malformed_reason or "", limit=200))
        text.append("\nraw fields\n", style=SECTION_STYLE)
        for section in sections:
            if not section.field:
                _section(text, section, part)
                continue
            body, marker = _window(section, part)
            text.append_text(display_text(section.title, limit=40, style="bold"))
            text.append(": ")
            text.append_text(body)
            text.append_text(marker)
            text.append("\n")
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
    for section in sections:
        _section(text, section, part)
    return text
