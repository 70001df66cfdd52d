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
    def limiter(self) -> str:
        """STRING with a TTL: jobs taken in the current rate-limit window (the TTL is what is
        left of the window), or a manual rate limit's sentinel value."""
        return f"{self.base}:limiter"

    @property
    def metrics_prefix(self) -> str:
        """What every metrics key starts with; scripts append ``<kind>:<minute ms>``."""
        return f"{self.base}:metrics:"

    def metrics(self, kind: str, minute_ms: int) -> str:
        """HASH with a TTL: one minute of ``kind`` (completed|failed) metrics, i.e. the count
        and latency histograms of the jobs that finished in the minute starting at ``minute_ms``."""
        return f"{self.metrics_prefix}{kind}:{minute_ms}"

    @property
    def workers(self) -> str:
        """ZSET of worker ids; score = when the worker's heartbeat expires, in ms."""
        return f"{self.base}:workers"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub CHANNEL (not a key): ids of running jobs an operator asked to cancel."""
        return f"{self.base}:cancel"

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

    def dependencies(self, job_id: str) -> str:
        """SET of the full job keys of a parent's children that have not finished yet."""
        return f"{self.base}:job:{job_id}:dependencies"

    def processed(self, job_id: str) -> str:
        """HASH: full job key of a completed child -> its return value (JSON)."""
        return f"{self.base}:job:{job_id}:processed"

    def ignored(self, job_id: str) -> str:
        """HASH: full job key of a child that failed with ``ignore_dependency_on_failure``
        -> its failed reason."""
        return f"{self.base}:job:{job_id}:ignored"

    def failed_children(self, job_id: str) -> str:
        """ZSET of full job keys of children that failed with ``fail_parent_on_failure``;
        score = when they failed, in ms."""
        return f"{self.base}:job:{job_id}:failed"

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

    @classmethod
    def from_any_key(cls, key: str, prefix: str = DEFAULT_PREFIX) -> QueueKeys | None:
        """The queue whose key ``key`` looks like (``prefix:{queue}:...``: a job, a state, its
        meta...), or None. Only the name is read: whether that queue exists is its meta key's
        to say."""
        head = f"{prefix}:{{"
        if not key.startswith(head):
            return None
        name, brace, rest = key[len(head) :].partition("}")
        if not brace or not rest.startswith(":"):
            return None
        try:
            return cls(name, prefix)
        except ValueError:
            return None

    def job_id_of(self, job_key: str) -> str | None:
        """The id in ``job_key`` if it is the hash key of a job of this queue, else None."""
        head = self.job_prefix
        if not job_key.startswith(head):
            return None
        job_id = job_key[len(head) :]
        return job_id if job_id and ":" not in job_id else None

    def queue_of_key(self, key: str) -> bool:
        """True if ``key`` belongs to this queue."""
        return key.startswith(self.base + ":")


_JOB_KEY = re.compile(r"^([A-Za-z0-9_.\-]{1,64}):\{([A-Za-z0-9_.\-]{1,200})\}:job:([^:]+)$")


def parse_job_key(job_key: str) -> tuple[QueueKeys, str] | None:
    """Split a job's hash key (``corral:{emails}:job:42``) into its queue's keys and its id,
    or None if it is not one. Flows store such keys to point at parents and children."""
    match = _JOB_KEY.match(job_key)
    if match is None:
        return None
    return QueueKeys(match.group(2), match.group(1)), match.group(3)
