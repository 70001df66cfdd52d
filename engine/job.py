"""The job snapshot read from a job hash, the job states, and the hash field names."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import InvalidJobOptions, JobCancelled
from .flow_model import Dependencies, JobRef

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
    PARENT = "parent"
    PARENT_POLICY = "parent_policy"
    DEFERRED_FAILURE = "deferred_failure"
    ORIGIN_QUEUE = "origin_queue"
    ORIGIN_ID = "origin_id"


class JobContext(Protocol):
    """What a running job's methods call back into (provided by the worker)."""

    async def update_progress(self, job_id: str, progress: Any) -> None: ...

    async def log(self, job_id: str, line: str) -> None: ...

    async def update_data(self, job_id: str, data: Any) -> None: ...

    async def extend_lock(self, job_id: str, ms: int) -> None: ...

    async def move_to_delayed(self, job_id: str, run_at: int, delay: int) -> int: ...

    def run_sync(self, coro: Any) -> Any: ...

    def stop_reason(self, job_id: str) -> BaseException | None:
        """Why the running attempt must stop (a ``JobCancelled`` or ``JobTimeout``), or None."""
        ...


@runtime_checkable
class FlowContext(Protocol):
    """A ``JobContext`` that can also read a parent's children (the worker's does)."""

    async def read_dependencies(self, job_id: str) -> Dependencies: ...

    def run_sync(self, coro: Any) -> Any: ...


def _int(fields: dict[str, str], key: str, default: int = 0) -> int:
    raw = fields.get(key)
    return int(raw) if raw else default  # absent or empty: the default


def _opt_int(fields: dict[str, str], key: str) -> int | None:
    raw = fields.get(key)
    return None if raw in (None, "") else int(raw)


def _json(fields: dict[str, str], key: str, default: Any = None) -> Any:
    raw = fields.get(key)
    if raw is None or raw == "":
        return default
    if raw == "{}":  # most jobs' data: a new dict without the parser
        return {}
    return json.loads(raw)


def _not_utf8(fields: dict[str, str]) -> str | None:
    """The first field whose name or value held bytes that are not UTF-8 (decoded with
    ``surrogateescape``, so they show as lone surrogates), or None."""
    try:  # one encode of everything: the fields are looked at one by one only if it fails
        "".join(fields).encode("utf-8")
        "".join(fields.values()).encode("utf-8")
        return None
    except (UnicodeEncodeError, TypeError):
        pass
    for name, value in fields.items():
        for text in (name, value):
            try:
                str(text).encode("utf-8")
            except UnicodeEncodeError:
                return name
    return None


def _run_at(timestamp_ms: int | None, delay: int | None) -> tuple[int, int]:
    """(run at, delay) for ``move_to_delayed``: exactly one of them, as an int >= 0."""
    if (timestamp_ms is None) == (delay is None):
        raise InvalidJobOptions("move_to_delayed: give either timestamp_ms or delay (ms)")
    value = timestamp_ms if timestamp_ms is not None else delay
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        name = "timestamp_ms" if timestamp_ms is not None else "delay"
        raise InvalidJobOptions(f"move_to_delayed({name}={value!r}): expected an int >= 0 (ms)")
    return (value, 0) if timestamp_ms is not None else (-1, value)


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
    parent: JobRef | None = None
    deferred_failure: str | None = None
    context: JobContext | None = field(default=None, repr=False, compare=False)
    origin_queue: str | None = None  # set on dead letters: the queue it failed in, its id there
    origin_id: str | None = None
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

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested for this running attempt (``Queue.cancel_job``)."""
        return isinstance(self._stop_reason(), JobCancelled)

    def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if a cancel was requested, or ``JobTimeout`` if the attempt is
        past its deadline: a ``def`` processor (which cannot be interrupted) calls this between
        steps to stop early."""
        reason = self._stop_reason()
        if reason is not None:
            raise type(reason)(str(reason))

    def _stop_reason(self) -> BaseException | None:
        return None if self.context is None else self.context.stop_reason(self.id)

    def update_progress_sync(self, progress: Any) -> None:
        """``update_progress`` for ``def`` processors, which run in a thread."""
        self._ctx().run_sync(self._ctx().update_progress(self.id, progress))

    def log_sync(self, line: str) -> None:
        """``log`` for ``def`` processors, which run in a thread."""
        self._ctx().run_sync(self._ctx().log(self.id, line))

    async def update_data(self, data: Any) -> None:
        """Replace the job's stored data (fenced by the lock). This snapshot keeps the data it
        was read with; ``Queue.get_job`` reads the new one."""
        await self._ctx().update_data(self.id, data)

    async def extend_lock(self, ms: int) -> None:
        """Make the job's lock last at least ``ms`` more ms (lock renewals never shorten it
        again); ``LockLost`` if the worker no longer holds it."""
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 1:
            raise InvalidJobOptions(f"extend_lock(ms={ms!r}): expected an int >= 1")
        await self._ctx().extend_lock(self.id, ms)

    async def move_to_delayed(
        self, timestamp_ms: int | None = None, *, delay: int | None = None
    ) -> int:
        """Send the job back to delayed until ``timestamp_ms`` (ms since the epoch, compared
        with the server clock) or for ``delay`` ms, without using an attempt; then raise
        ``DelayedError`` from the processor. Returns the run-at time in ms."""
        run_at, wait = _run_at(timestamp_ms, delay)
        return int(await self._ctx().move_to_delayed(self.id, run_at, wait))

    def update_data_sync(self, data: Any) -> None:
        """``update_data`` for ``def`` processors."""
        self._ctx().run_sync(self.update_data(data))

    def extend_lock_sync(self, ms: int) -> None:
        """``extend_lock`` for ``def`` processors."""
        self._ctx().run_sync(self.extend_lock(ms))

    def move_to_delayed_sync(
        self, timestamp_ms: int | None = None, *, delay: int | None = None
    ) -> int:
        """``move_to_delayed`` for ``def`` processors."""
        return int(self._ctx().run_sync(self.move_to_delayed(timestamp_ms, delay=delay)))

    def _flow_ctx(self) -> FlowContext:
        ctx = self._ctx()
        if not isinstance(ctx, FlowContext):
            raise RuntimeError(f"job {self.id!r}: this worker cannot read a job's children")
        return ctx

    async def get_dependencies(self) -> Dependencies:
        """This job's children: unprocessed, processed (with values), ignored and failed."""
        return await self._flow_ctx().read_dependencies(self.id)

    async def get_children_values(self) -> dict[JobRef, Any]:
        """The return values of this job's completed children, by child."""
        return (await self.get_dependencies()).processed

    async def get_ignored_failures(self) -> dict[JobRef, str]:
        """Failed reasons of children that failed with ``ignore_dependency_on_failure``."""
        return (await self.get_dependencies()).ignored

    def get_children_values_sync(self) -> dict[JobRef, Any]:
        """``get_children_values`` for ``def`` processors, which run in a thread."""
        ctx = self._flow_ctx()
        deps: Dependencies = ctx.run_sync(ctx.read_dependencies(self.id))
        return deps.processed

    def get_dependencies_sync(self) -> Dependencies:
        """``get_dependencies`` for ``def`` processors, which run in a thread."""
        ctx = self._flow_ctx()
        deps: Dependencies = ctx.run_sync(ctx.read_dependencies(self.id))
        return deps

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
        if (bad := _not_utf8(fields)) is not None:
            raise CorruptJob(job_id, f"field {bad!r} is not valid UTF-8", fields)
        if F.NAME not in fields or F.DATA not in fields:
            raise CorruptJob(job_id, "missing 'name' or 'data'", fields)
        try:
            opts = _json(fields, F.OPTS, {})
            if not isinstance(opts, dict):
                raise CorruptJob(job_id, "'opts' is not a JSON object", fields)
            stack = _json(fields, F.STACKTRACE, [])
            parent = None
            if fields.get(F.PARENT):
                parent = JobRef.from_key(fields[F.PARENT])
                if parent is None:
                    raise CorruptJob(job_id, "'parent' is not a job key", fields)
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
                parent=parent,
                deferred_failure=fields.get(F.DEFERRED_FAILURE) or None,
                origin_queue=fields.get(F.ORIGIN_QUEUE) or None,
                origin_id=fields.get(F.ORIGIN_ID) or None,
            )
        except CorruptJob:
            raise
        except (ValueError, TypeError) as exc:
            raise CorruptJob(job_id, str(exc), fields) from exc
