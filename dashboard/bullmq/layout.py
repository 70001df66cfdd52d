"""Telling BullMQ v5 queues from v6 ones: the ``version`` hint in ``meta``, and where a paused
queue keeps its jobs (v5 renames ``wait`` to ``paused``; v6 only sets the ``paused`` flag).

A queue whose structure disagrees with itself (a paused list beside a non-empty wait while paused,
a paused list on a running queue, a v6 version hint on a v5-style pause) is reported as mixed:
clients of both majors wrote to it, and an action that pauses or resumes it could lose jobs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

_VERSION = re.compile(r"^bullmq:(\d+)\.\d+")


class PauseStyle(StrEnum):
    """Where a paused queue's ready jobs are."""

    LIST = "v5"
    """In the ``paused`` list (BullMQ 5 and earlier)."""
    FLAG = "v6"
    """In ``wait``; only the ``paused`` field of ``meta`` stops workers (BullMQ 6)."""
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class QueueLayout:
    """What the dashboard knows about the BullMQ version behind one queue."""

    version: str | None
    """``meta.version`` as written by the last Node ``Queue`` constructed on it (a hint only)."""
    major: int | None
    pause_style: PauseStyle
    mixed: bool = False
    reason: str = ""
    """Why the layout was judged so, in a few words."""
    paused: bool = False
    """The ``paused`` flag of ``meta`` is set."""


def version_major(version: str | None) -> int | None:
    """The major version from ``bullmq:<semver>``; None for other libraries or no hint."""
    match = _VERSION.match(version or "")
    return int(match.group(1)) if match else None


def detect_layout(version: str | None, paused: bool, wait_len: int, paused_len: int) -> QueueLayout:
    """Judge a queue by its structure first and by the version hint second."""
    return replace(_judge(version, paused, wait_len, paused_len), paused=paused)


def _judge(version: str | None, paused: bool, wait_len: int, paused_len: int) -> QueueLayout:
    major = version_major(version)
    hinted = None
    if major is not None and major >= 6:
        hinted = PauseStyle.FLAG
    elif major == 5:
        hinted = PauseStyle.LIST
    if paused_len and not paused:
        return QueueLayout(
            version, major, hinted or PauseStyle.UNKNOWN, True, "paused list on a running queue"
        )
    if paused_len and paused:
        if wait_len:
            return QueueLayout(
                version, major, PauseStyle.LIST, True, "paused: jobs in both wait and paused"
            )
        mixed = hinted is PauseStyle.FLAG
        reason = "paused list while paused" + (", but a v6 version hint" if mixed else "")
        return QueueLayout(version, major, PauseStyle.LIST, mixed, reason)
    if paused and wait_len:
        mixed = hinted is PauseStyle.LIST
        reason = "paused flag with jobs left in wait" + (", but a v5 version hint" if mixed else "")
        return QueueLayout(version, major, PauseStyle.FLAG, mixed, reason)
    if hinted is not None:
        return QueueLayout(version, major, hinted, False, f"version hint {version}")
    return QueueLayout(version, major, PauseStyle.UNKNOWN, False, "no version hint, no evidence")
