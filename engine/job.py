"""The job snapshot read from a job hash, the job states, and the hash field names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class JobState(StrEnum):
    """Where a job is; each state is one Redis structure of the queue (see ``QueueKeys``)."""

    WAIT = "wait"
    ACTIVE = "active"
    DELAYED = "delayed"
    PRIORITIZED = "prioritized"
    FAILED = "failed"
    COMPLETED = "completed"
    PAUSED = "paused"
    WAITING_CHILDREN = "waiting-children"


ALL_STATES: tuple[JobState, ...] = tuple(JobState)
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})
READY_STATES = frozenset({JobState.WAIT, JobState.PAUSED, JobState.PRIORITIZED})
LIST_STATES = frozenset({JobState.WAIT, JobState.PAUSED})
NEWEST_FIRST_STATES = frozenset({JobState.COMPLETED, JobState.FAILED})  # pages list newest first


class F:
    """Field names of the job hash (written by the Lua scripts, read by ``Job.from_hash``)."""

    NAME = "name"
    DATA = "data"
    OPTS = "opts"
    TIMESTAMP = "timestamp"
    DELAY = "delay"
    PRIORITY = "priority"
    ATTEMPTS = "attempts"
    ATTEMPTS_MADE = "attempts_made"
    ATTEMPTS_STARTED = "attempts_started"
    STALLED_COUNT = "stalled_count"
    PROCESSED_ON = "processed_on"
    FINISHED_ON = "finished_on"
    PROGRESS = "progress"
    RETURNVALUE = "returnvalue"
    FAILED_REASON = "failed_reason"
    STACKTRACE = "stacktrace"
    WORKER = "worker"
    SCHEDULER = "scheduler"


class JobContext(Protocol):
    """What a running job's methods call back into (provided by the worker)."""

    async def update_progress(self, job_id: str, progress: Any) -> None: ...

    async def log(self, job_id: str, line: str) -> None: ...

    def run_sync(self, coro: Any) -> Any: ...


def _int(fields: dict[str, str], key: str, default: int = 0) -> int:
    raw = fields.get(key)
    if raw is None or raw == "":
        return default
    return int(raw)


def _opt_int(fields: dict[str, str], key: str) -> int | None:
    raw = fields.get(key)
    return None if raw in (None, "") else int(raw)


def _json(fields: dict[str, str], key: str, default: Any = None) -> Any:
    raw = fields.get(key)
    if raw is None or raw == "":
        return default
    return json.loads(raw)


class CorruptJob(ValueError):
    """A job hash that cannot be read as a job; ``raw`` keeps its fields for display."""

    def __init__(self, job_id: str, reason: str, raw: dict[str, str]) -> None:
        super().__init__(f"corrupt job data for job {job_id!r}: {reason}")
        self.job_id = job_id
        self.reason = reason
        self.raw = raw


@dataclass(frozen=True, slots=True)
class Job:
    """A snapshot of one job, as read from its hash. Change a job through ``Queue``/``Worker``."""

    id: str
    queue: str
    name: str
    data: Any
    opts: dict[str, Any]
    timestamp: int
    delay: int = 0
    priority: int = 0
    attempts: int = 1
    attempts_made: int = 0
    attempts_started: int = 0
    stalled_count: int = 0
    processed_on: int | None = None
    finished_on: int | None = None
    progress: Any = None
    returnvalue: Any = None
    failed_reason: str | None = None
    stacktrace: list[str] = field(default_factory=list)
    worker: str | None = None
    scheduler_id: str | None = None  # set on the jobs a job scheduler creates
    deduplicated: bool = False  # returned by an add whose deduplication id another job held
    state: JobState | None = None
    logs: list[str] | None = None
    context: JobContext | None = field(default=None, repr=False, compare=False)
    typed: Any = field(default=None, repr=False, compare=False)  # data as its registered schema

    def typed_as(self, schema: type[T]) -> T:
        """``typed``, checked to be a ``schema`` (for type checkers): the worker sets it when
        the job's name has a schema in the ``JobTypes`` it was given."""
        if not isinstance(self.typed, schema):
            got = "no typed data" if self.typed is None else type(self.typed).__name__
            raise TypeError(
                f"job {self.id!r} ({self.name!r}) carries {got}, not {schema.__name__}: "
                "register the schema for this job name in the worker's JobTypes"
            )
        return self.typed

    def _ctx(self) -> JobContext:
        if self.context is None:
            raise RuntimeError(
                f"job {self.id!r}: progress and logs can only be written by the worker running it"
            )
        return self.context

    async def update_progress(self, progress: Any) -> None:
        """Store progress (any JSON value) and emit a ``progress`` event; fenced by the lock."""
        await self._ctx().update_progress(self.id, progress)

    async def log(self, line: str) -> None:
        """Append a line to the job's log (the newest 1000 lines are kept)."""
        await self._ctx().log(self.id, line)

    def update_progress_sync(self, progress: Any) -> None:
        """``update_progress`` for ``def`` processors, which run in a thread."""
        self._ctx().run_sync(self._ctx().update_progress(self.id, progress))

    def log_sync(self, line: str) -> None:
        """``log`` for ``def`` processors, which run in a thread."""
        self._ctx().run_sync(self._ctx().log(self.id, line))

    @classmethod
    def from_hash(
        cls,
        queue: str,
        job_id: str,
        fields: dict[str, str],
        state: JobState | None = None,
        context: JobContext | None = None,
    ) -> Job:
        """Build a job from its hash; raise ``CorruptJob`` (keeping the raw fields) if it is not."""
        if F.NAME not in fields or F.DATA not in fields:
            raise CorruptJob(job_id, "missing 'name' or 'data'", fields)
        try:
            opts = _json(fields, F.OPTS, {})
            if not isinstance(opts, dict):
                raise CorruptJob(job_id, "'opts' is not a JSON object", fields)
            stack = _json(fields, F.STACKTRACE, [])
            return cls(
                id=job_id,
                queue=queue,
                name=fields[F.NAME],
                data=_json(fields, F.DATA),
                opts=opts,
                timestamp=_int(fields, F.TIMESTAMP),
                delay=_int(fields, F.DELAY),
                priority=_int(fields, F.PRIORITY),
                attempts=_int(fields, F.ATTEMPTS, 1),
                attempts_made=_int(fields, F.ATTEMPTS_MADE),
                attempts_started=_int(fields, F.ATTEMPTS_STARTED),
                stalled_count=_int(fields, F.STALLED_COUNT),
                processed_on=_opt_int(fields, F.PROCESSED_ON),
                finished_on=_opt_int(fields, F.FINISHED_ON),
                progress=_json(fields, F.PROGRESS),
                returnvalue=_json(fields, F.RETURNVALUE),
                failed_reason=fields.get(F.FAILED_REASON) or None,
                stacktrace=[str(s) for s in stack] if isinstance(stack, list) else [str(stack)],
                worker=fields.get(F.WORKER) or None,
                scheduler_id=fields.get(F.SCHEDULER) or None,
                state=state,
                context=context,
            )
        except CorruptJob:
            raise
        except (ValueError, TypeError) as exc:
            raise CorruptJob(job_id, str(exc), fields) from exc
