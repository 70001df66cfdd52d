"""Every Redis key of a Corral queue: the one place that builds key names.

All keys of one queue share the hash tag ``{queue}``, so a queue lives in one cluster slot and
every script stays single-slot. ``docs/protocol.md`` describes each key in prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "corral"

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_STATE_KEYS = frozenset(
    {"wait", "paused", "prioritized", "delayed", "active", "completed", "failed",
     "waiting-children"}
)  # fmt: skip
_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def validate_queue_name(name: object) -> str:
    """Return ``name`` if it is a usable queue name, else raise ``ValueError`` saying why."""
    if not isinstance(name, str) or not _QUEUE_NAME.match(name):
        raise ValueError(
            f"queue name {name!r} is invalid: expected 1-200 characters of letters, digits, "
            "'_', '.' or '-' (no spaces, braces or colons)"
        )
    return name


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it is a usable key prefix, else raise ``ValueError`` saying why."""
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(
            f"prefix {prefix!r} is invalid: expected 1-64 characters of letters, digits, "
            "'_', '.' or '-'"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue, e.g. ``corral:{emails}:wait``."""

    queue: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_queue_name(self.queue)
        validate_prefix(self.prefix)

    @property
    def base(self) -> str:
        """The common part of every key of this queue: ``prefix:{queue}``."""
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def meta(self) -> str:
        """HASH: ``version``, ``created``, ``paused`` (present while paused), ``max_events``, and
        the circuit breaker's settings and state (``breaker``, ``tripped``, ``breaker_*``)."""
        return f"{self.base}:meta"

    @property
    def counters(self) -> str:
        """HASH: monotonic ``completed`` and ``failed`` totals (never decremented)."""
        return f"{self.base}:counters"

    @property
    def id(self) -> str:
        """STRING: INCR counter that hands out automatic job ids."""
        return f"{self.base}:id"

    @property
    def wait(self) -> str:
        """LIST of ready job ids; producers LPUSH (RPUSH for LIFO), workers take from the right."""
        return f"{self.base}:wait"

    @property
    def paused(self) -> str:
        """LIST of ready job ids while the queue is paused (``wait`` is renamed to it)."""
        return f"{self.base}:paused"

    @property
    def prioritized(self) -> str:
        """ZSET of ready job ids with a priority; score = priority * 2^32 + sequence (FIFO)."""
        return f"{self.base}:prioritized"

    @property
    def priority_seq(self) -> str:
        """STRING: INCR sequence that keeps jobs of one priority in FIFO order."""
        return f"{self.base}:pc"

    @property
    def delayed(self) -> str:
        """ZSET of delayed job ids; score = run-at time in ms (server clock)."""
        return f"{self.base}:delayed"

    @property
    def active(self) -> str:
        """ZSET of job ids a worker holds; score = time it became active in ms."""
        return f"{self.base}:active"

    @property
    def completed(self) -> str:
        """ZSET of completed job ids kept by retention; score = finish time in ms."""
        return f"{self.base}:completed"

    @property
    def failed(self) -> str:
        """ZSET of failed job ids kept by retention; score = finish time in ms."""
        return f"{self.base}:failed"

    @property
    def waiting_children(self) -> str:
        """ZSET of parent job ids waiting for their children; score = time they started waiting."""
        return f"{self.base}:waiting-children"

    @property
    def stalled(self) -> str:
        """SET of active job ids marked by the last stalled check (mark, then sweep)."""
        return f"{self.base}:stalled"

    @property
    def stalled_check(self) -> str:
        """STRING with a TTL: present while a stalled check ran less than one interval ago."""
        return f"{self.base}:stalled-check"

    @property
    def marker(self) -> str:
        """ZSET that idle workers block on (BZPOPMIN); score = when a job may be ready, in ms."""
        return f"{self.base}:marker"

    @property
    def events(self) -> str:
        """STREAM of events, capped with ``MAXLEN ~ max_events``; field ``event`` names it."""
        return f"{self.base}:events"

    @property
    def workers(self) -> str:
        """ZSET of worker ids; score = when the worker's heartbeat expires, in ms."""
        return f"{self.base}:workers"

    def worker(self, worker_id: str) -> str:
        """HASH with a TTL: one worker's heartbeat (host, pid, concurrency, in flight...)."""
        return f"{self.base}:worker:{worker_id}"

    @property
    def schedulers(self) -> str:
        """ZSET of job scheduler ids; score = next run in ms, ``+inf`` once a scheduler ended."""
        return f"{self.base}:schedulers"

    def scheduler(self, scheduler_id: str) -> str:
        """HASH: one job scheduler (timing, job template, iterations, next run, last job)."""
        return f"{self.base}:scheduler:{scheduler_id}"

    @property
    def breaker_window(self) -> str:
        """HASH: the circuit breaker's failure window, ``ok:<bucket>``/``fail:<bucket>`` counts."""
        return f"{self.base}:breaker-window"

    def dedup(self, dedup_id: str) -> str:
        """STRING (optional PX TTL): id of the job that holds deduplication id ``dedup_id``."""
        return f"{self.base}:dedup:{dedup_id}"

    def job(self, job_id: str) -> str:
        """HASH: one job (name, data, opts, timestamps, attempts, progress, result...)."""
        return f"{self.base}:job:{job_id}"

    def lock(self, job_id: str) -> str:
        """STRING with a TTL: the token of the worker that holds an active job."""
        return f"{self.base}:job:{job_id}:lock"

    def logs(self, job_id: str) -> str:
        """LIST of log lines a processor wrote for one job (capped)."""
        return f"{self.base}:job:{job_id}:logs"

    def of_state(self, state: str) -> str:
        """The key holding the jobs of ``state`` ("wait", "waiting-children", ...)."""
        key = getattr(self, state.replace("-", "_"), None) if state in _STATE_KEYS else None
        if not isinstance(key, str):
            raise ValueError(f"state {state!r} is invalid: expected one of {sorted(_STATE_KEYS)}")
        return key

    @property
    def job_prefix(self) -> str:
        """What every job key starts with; scripts append the id (and ``:lock``/``:logs``)."""
        return f"{self.base}:job:"

    @classmethod
    def meta_pattern(cls, prefix: str = DEFAULT_PREFIX) -> str:
        """SCAN MATCH pattern that finds the ``meta`` key of every queue under ``prefix``."""
        return f"{validate_prefix(prefix)}:{{*}}:meta"

    @classmethod
    def from_meta_key(cls, key: str, prefix: str = DEFAULT_PREFIX) -> QueueKeys | None:
        """The queue a ``meta`` key belongs to, or None if ``key`` is not one of ours."""
        head = f"{prefix}:{{"
        tail = "}:meta"
        if not (key.startswith(head) and key.endswith(tail)):
            return None
        name = key[len(head) : -len(tail)]
        try:
            return cls(name, prefix)
        except ValueError:
            return None

    def queue_of_key(self, key: str) -> bool:
        """True if ``key`` belongs to this queue."""
        return key.startswith(self.base + ":")
