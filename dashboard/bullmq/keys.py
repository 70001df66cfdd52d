"""BullMQ's key names (``<prefix>:<queue>:<suffix>``, jobs at ``<prefix>:<queue>:<id>``): the one
place the BullMQ backend builds them. See ``BULLMQ-LAYOUT.md`` §1-3."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_BULL_PREFIX = "bull"

LIST_STATES = frozenset({"wait", "paused", "active"})
"""States kept in a LIST; the others are sorted sets."""

STATE_SUFFIX: dict[str, str] = {
    "wait": "wait",
    "active": "active",
    "delayed": "delayed",
    "prioritized": "prioritized",
    "failed": "failed",
    "completed": "completed",
    "paused": "paused",
    "waiting-children": "waiting-children",
}
"""Dashboard state name to the key suffix that holds it (the same words in BullMQ)."""

_GLOB_SPECIAL = re.compile(r"([\\*?\[\]])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a SCAN MATCH / PSUBSCRIBE pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


def validate_bull_prefix(prefix: object) -> str:
    """Return ``prefix`` if BullMQ could have used it (``bull``, ``{tag}``, ``app:jobs``...)."""
    if not isinstance(prefix, str) or not prefix or len(prefix) > 256 or _CONTROL.search(prefix):
        raise ValueError(
            f"BullMQ prefix {prefix!r} is invalid: expected 1-256 characters without control "
            "characters (BullMQ's default is 'bull')"
        )
    return prefix


def validate_bull_queue_name(name: object) -> str:
    """Return ``name`` if BullMQ accepts it as a queue name (non-empty, no ``:``)."""
    if not isinstance(name, str) or not name or ":" in name or _CONTROL.search(name):
        raise ValueError(
            f"BullMQ queue name {name!r} is invalid: expected a non-empty name without ':' "
            "or control characters"
        )
    return name


@dataclass(frozen=True, slots=True)
class BullKeys:
    """The keys of one BullMQ queue, e.g. ``bull:emails:wait`` and job ``bull:emails:42``."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """The job-key prefix BullMQ's scripts receive: ``<prefix>:<queue>:``."""
        return f"{self.prefix}:{self.queue}:"

    def state(self, state: str) -> str:
        """The LIST or ZSET that holds the jobs of ``state`` (``ValueError`` if no such state)."""
        try:
            return self.base + STATE_SUFFIX[state]
        except KeyError:
            raise ValueError(
                f"state {state!r} is invalid: expected one of {', '.join(STATE_SUFFIX)}"
            ) from None

    @property
    def wait(self) -> str:
        """LIST of ready job ids; producers LPUSH, workers take from the right."""
        return self.base + "wait"

    @property
    def paused(self) -> str:
        """LIST holding the ready jobs while a v5 queue is paused (v6 leaves them in wait)."""
        return self.base + "paused"

    @property
    def active(self) -> str:
        """LIST of job ids a worker took (newest on the left)."""
        return self.base + "active"

    @property
    def meta(self) -> str:
        """HASH of queue settings: ``paused``, ``version``, ``opts.maxLenEvents``..."""
        return self.base + "meta"

    @property
    def events(self) -> str:
        """STREAM of the queue's events, first field ``event``."""
        return self.base + "events"

    @property
    def stalled(self) -> str:
        """SET of active ids marked at the last stall sweep."""
        return self.base + "stalled"

    @property
    def repeat(self) -> str:
        """ZSET of job scheduler ids (and legacy repeat keys) scored by their next run (ms)."""
        return self.base + "repeat"

    def scheduler(self, scheduler_id: str) -> str:
        """HASH of one job scheduler: ``name``, ``every``/``pattern``, ``tz``, ``ic``..."""
        return f"{self.base}repeat:{scheduler_id}"

    def metrics(self, kind: str) -> str:
        """HASH ``count``, ``prevTS``, ``prevCount`` of ``completed`` or ``failed`` jobs."""
        return f"{self.base}metrics:{kind}"

    def metrics_data(self, kind: str) -> str:
        """LIST of jobs finished per minute, newest minute first."""
        return f"{self.base}metrics:{kind}:data"

    def job(self, job_id: str) -> str:
        """HASH of one job."""
        return self.base + job_id

    def lock(self, job_id: str) -> str:
        """STRING holding the token of the worker that runs the job, with a TTL."""
        return f"{self.base}{job_id}:lock"

    def logs(self, job_id: str) -> str:
        """LIST of the job's log lines, oldest first."""
        return f"{self.base}{job_id}:logs"

    def dependencies(self, job_id: str) -> str:
        """SET of full keys of a parent's children that have not finished."""
        return f"{self.base}{job_id}:dependencies"

    def processed(self, job_id: str) -> str:
        """HASH child key -> JSON return value, of a parent's completed children."""
        return f"{self.base}{job_id}:processed"

    def failed_children(self, job_id: str) -> str:
        """HASH child key -> failure reason, of children whose failure the parent ignored."""
        return f"{self.base}{job_id}:failed"

    def unsuccessful(self, job_id: str) -> str:
        """ZSET of child keys that failed the parent (``failParentOnFailure``), scored by ms."""
        return f"{self.base}{job_id}:unsuccessful"

    @staticmethod
    def meta_pattern(prefix: str) -> str:
        """SCAN MATCH pattern for the ``meta`` key of every queue under ``prefix``."""
        return f"{glob_escape(prefix)}:*:meta"

    @staticmethod
    def queue_of_meta_key(key: str, prefix: str) -> str | None:
        """The queue whose ``meta`` key this is, or None (BullMQ queue names have no ``:``)."""
        head = f"{prefix}:"
        if not key.startswith(head) or not key.endswith(":meta"):
            return None
        name = key[len(head) : -len(":meta")]
        return name if name and ":" not in name else None
