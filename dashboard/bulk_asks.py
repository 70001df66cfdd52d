"""The bulk actions over the exact jobs an operator saw, and what each asks before it runs.

Retry all failed (``R``), promote all delayed (``A``) and replay all dead letters (``R`` on a
dead-letter queue) all work alike: the ids of one state are read when the key is pressed (at most
``BULK_LIMIT``, and the question says when there are more), the confirmation names the count and
needs the queue name typed, and the action then runs on those ids only, in batches, each job
acted on only if it is still in the state it was seen in.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from dashboard.audit import ActionScope
from dashboard.bulk import Selection
from dashboard.sanitize import display_text


@dataclass(frozen=True, slots=True)
class BulkKind:
    """One bulk action over the jobs of a state, and its words."""

    action: str
    """The audit log's name for it."""
    state: str
    title: str
    label: str
    verb: str
    noun: str
    """One job, e.g. "failed job"; the plural adds an "s"."""
    order: str
    """Which jobs a capped selection holds, e.g. "newest"."""
    whither: str
    """Said after the queue, e.g. " to their origin queues"."""
    only: str
    """What is left alone, after "Only these, "."""
    key: str


RETRY_ALL = BulkKind(
    action="retry all",
    state="failed",
    title="Retry all failed",
    label="Retry all",
    verb="Retry",
    noun="failed job",
    order="newest",
    whither="",
    only="if still failed; new failures are left alone.",
    key="R",
)
PROMOTE_ALL = BulkKind(
    action="promote all",
    state="delayed",
    title="Promote all delayed",
    label="Promote all",
    verb="Promote",
    noun="delayed job",
    order="soonest",
    whither="",
    only="if still delayed; jobs delayed since are left alone.",
    key="A",
)
REPLAY_ALL = BulkKind(
    action="replay all",
    state="failed",
    title="Replay all dead letters",
    label="Replay all",
    verb="Replay",
    noun="dead letter",
    order="newest",
    whither=" to their origin queues, with fresh attempts",
    only="if still here; new dead letters are left alone.",
    key="R",
)


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def nothing_to_do(kind: BulkKind) -> str:
    """The notice when the state is empty, e.g. "no failed jobs to retry"."""
    return f"no {kind.noun}s to {kind.verb.lower()}"


def question(kind: BulkKind, queue: str, selection: Selection, limit: int) -> Text:
    """E.g. "Retry these 6 failed jobs of queue emails?", naming a cap when there is one."""
    count = len(selection.ids)
    if selection.capped:
        head = f"{kind.verb} the {count:,} {kind.order} of {_plural(selection.total, kind.noun)}"
    elif count == 1:
        head = f"{kind.verb} the one {kind.noun}"
    else:
        head = f"{kind.verb} these {_plural(count, kind.noun)}"
    body = Text.assemble(head, " of queue ", display_text(queue, limit=60), kind.whither, "?")
    body.append(f"\nOnly {'this one' if count == 1 else 'these'}, {kind.only}")
    if selection.capped:
        body.append(f"\nAt most {limit:,} at a time: press {kind.key} again for the rest.")
    return body


def scope(kind: BulkKind, queue: str, selection: Selection) -> ActionScope:
    """The audit entry's scope, e.g. "6 failed jobs (of 6)"."""
    count = len(selection.ids)
    noun = kind.noun if count == 1 else kind.noun + "s"
    return ActionScope(kind.action, queue, f"{count} {noun} (of {selection.total})")
