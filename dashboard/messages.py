"""Messages that carry data up to the app and its screens."""

from __future__ import annotations

from textual.message import Message

from dashboard.model import DashboardSnapshot


class SnapshotReady(Message):
    """The monitor produced a new snapshot; a newer one replaces it if still queued."""

    def __init__(self, snapshot: DashboardSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters."""
        return isinstance(message, SnapshotReady)
