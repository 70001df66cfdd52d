"""How the jobs of a flow point at each other: ``JobRef`` (a job in some queue) and
``Dependencies`` (what a parent knows about its children)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .keys import DEFAULT_PREFIX, QueueKeys, parse_job_key


@dataclass(frozen=True, slots=True)
class JobRef:
    """One job of one queue: a parent or a child in a flow."""

    queue: str
    id: str
    prefix: str = DEFAULT_PREFIX

    @property
    def keys(self) -> QueueKeys:
        """The keys of the job's queue."""
        return QueueKeys(self.queue, self.prefix)

    @property
    def key(self) -> str:
        """The job's hash key, as flows store it (``corral:{emails}:job:42``)."""
        return self.keys.job(self.id)

    @classmethod
    def from_key(cls, job_key: str) -> JobRef | None:
        """Read a stored job key back; None if it is not one."""
        parsed = parse_job_key(job_key)
        if parsed is None:
            return None
        keys, job_id = parsed
        return cls(keys.queue, job_id, keys.prefix)

    def __str__(self) -> str:
        return f"{self.queue}:{self.id}"


@dataclass(frozen=True, slots=True)
class Dependencies:
    """A parent's children, by how they ended.

    ``unprocessed``: not finished yet, or failed with no failure policy (the parent waits for
    them until they are retried or removed). ``processed``: completed, with their return
    values. ``ignored``: failed with ``ignore_dependency_on_failure``, with their failed
    reasons. ``failed``: failed with ``fail_parent_on_failure`` (which failed the parent).
    Children that failed with ``remove_dependency_on_failure`` are not recorded.
    """

    unprocessed: list[JobRef] = field(default_factory=list)
    processed: dict[JobRef, Any] = field(default_factory=dict)
    ignored: dict[JobRef, str] = field(default_factory=dict)
    failed: list[JobRef] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """How many children the parent still waits for."""
        return len(self.unprocessed)

    def children(self) -> list[JobRef]:
        """Every child recorded, in the order unprocessed, processed, ignored, failed."""
        return [*self.unprocessed, *self.processed, *self.ignored, *self.failed]
