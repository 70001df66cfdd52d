"""Keyspace notifications: whether the server sends the ones the monitor listens to, and the
exact ``CONFIG SET`` that would turn them on (offered in write mode, run only when confirmed).
"""

from __future__ import annotations

from dashboard.model import DashboardSnapshot, Mode

NEEDED = "Khlz"
"""Keyspace events (K) for hashes (a queue's meta: created, paused, resumed), lists and sorted
sets (the job states); nothing else is added."""
CONFIG_KEY = "notify-keyspace-events"


def keyspace_enabled(flags: str) -> bool:
    """True if ``notify-keyspace-events`` sends keyspace events for lists and sorted sets."""
    return "K" in flags and ("A" in flags or ("l" in flags and "z" in flags))


def flags_to_enable(current: str) -> str:
    """``current`` with what the dashboard needs added, keeping everything already set."""
    wanted = "K" if "A" in current else NEEDED
    return current + "".join(flag for flag in wanted if flag not in current)


def enable_command(current: str) -> str:
    """E.g. ``CONFIG SET notify-keyspace-events Khlz``."""
    return f"CONFIG SET {CONFIG_KEY} {flags_to_enable(current)}"


def can_offer(snapshot: DashboardSnapshot | None, read_only: bool) -> bool:
    """Polling because notifications are off, the flags are readable, and actions are allowed."""
    return (
        not read_only
        and snapshot is not None
        and snapshot.mode is Mode.POLLING
        and snapshot.notify_flags is not None
        and not keyspace_enabled(snapshot.notify_flags)
    )
