"""SyncQueue: the ``Queue`` producer and admin API for code without asyncio (Django, Flask,
scripts). It runs a private event loop in one daemon thread and waits for each call."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from .breaker import Breaker, BreakerState
from .cancellation import CancelResult
from .connection import Connection
from .dead_letters import ReplayResult
from .flow_model import Dependencies, JobRef
from .job import Job, JobState
from .keys import DEFAULT_PREFIX
from .metrics import Metrics
from .queue import BulkItem, Queue
from .schedulers import JobScheduler
from .worker_info import WorkerInfo

T = TypeVar("T")


class SyncQueue:
    """Same methods as ``Queue``, blocking. The connection must be a URL (or None)."""

    def __init__(
        self,
        name: str,
        connection: str | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        **options: Any,
    ) -> None:
        if connection is not None and not isinstance(connection, str):
            raise TypeError("SyncQueue takes a redis:// URL (an asyncio client belongs to a loop)")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"corral-sync-{name}", daemon=True
        )
        self._thread.start()
        conn: Connection = connection
        try:
            self._queue: Queue = self._run(_make(name, conn, prefix, options))
        except BaseException:  # bad name or options: stop the thread started for nothing
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._queue.name

    def close(self) -> None:
        """Close the connection and stop the private loop."""
        if self._loop.is_running():
            self._run(self._queue.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, name: str, schema: type) -> type:
        """See ``Queue.register``."""
        return self._queue.register(name, schema)

    def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """See ``Queue.add``."""
        return self._run(self._queue.add(name, data, **options))

    def add_bulk(self, jobs: Iterable[BulkItem], *, durable: bool | None = None) -> list[Job]:
        """See ``Queue.add_bulk``."""
        return self._run(self._queue.add_bulk(list(jobs), durable=durable))

    def get_counts(self, *states: str | JobState) -> dict[str, int]:
        """See ``Queue.get_counts``."""
        return self._run(self._queue.get_counts(*states))

    def get_job(self, job_id: str) -> Job | None:
        """See ``Queue.get_job``."""
        return self._run(self._queue.get_job(job_id))

    def get_jobs(self, state: str | JobState, start: int = 0, end: int = 49) -> list[Job]:
        """See ``Queue.get_jobs``."""
        return self._run(self._queue.get_jobs(state, start, end))

    def get_job_state(self, job_id: str) -> JobState | None:
        """See ``Queue.get_job_state``."""
        return self._run(self._queue.get_job_state(job_id))

    def get_dependencies(self, job_id: str) -> Dependencies:
        """See ``Queue.get_dependencies``."""
        return self._run(self._queue.get_dependencies(job_id))

    def get_children_values(self, job_id: str) -> dict[JobRef, Any]:
        """See ``Queue.get_children_values``."""
        return self._run(self._queue.get_children_values(job_id))

    def pause(self) -> bool:
        """See ``Queue.pause``."""
        return self._run(self._queue.pause())

    def resume(self) -> bool:
        """See ``Queue.resume``."""
        return self._run(self._queue.resume())

    def is_paused(self) -> bool:
        """See ``Queue.is_paused``."""
        return self._run(self._queue.is_paused())

    def retry_job(self, job_id: str, state: str = "failed") -> None:
        """See ``Queue.retry_job``."""
        self._run(self._queue.retry_job(job_id, state))

    def retry_jobs(self, state: str = "failed", count: int | None = None) -> int:
        """See ``Queue.retry_jobs``."""
        return self._run(self._queue.retry_jobs(state, count))

    def cancel_job(self, job_id: str, by: str = "api") -> CancelResult:
        """``Queue.cancel_job``."""
        return self._run(self._queue.cancel_job(job_id, by))

    def replay_dead_letters(
        self, ids: Sequence[str] | None = None, *, count: int | None = None
    ) -> ReplayResult:
        """``Queue.replay_dead_letters``."""
        return self._run(self._queue.replay_dead_letters(ids, count=count))

    def remove_job(self, job_id: str) -> str:
        """See ``Queue.remove_job``."""
        return self._run(self._queue.remove_job(job_id))

    def promote_job(self, job_id: str) -> None:
        """See ``Queue.promote_job``."""
        self._run(self._queue.promote_job(job_id))

    def clean(self, grace_ms: int, limit: int, state: str = "completed") -> Sequence[str]:
        """See ``Queue.clean``."""
        return self._run(self._queue.clean(grace_ms, limit, state))

    def drain(self, delayed: bool = False) -> int:
        """See ``Queue.drain``."""
        return self._run(self._queue.drain(delayed))

    def change_priority(self, job_id: str, priority: int) -> None:
        """See ``Queue.change_priority``."""
        self._run(self._queue.change_priority(job_id, priority))

    def update_data(self, job_id: str, data: Any) -> None:
        """See ``Queue.update_data``."""
        self._run(self._queue.update_data(job_id, data))

    def get_workers(self) -> list[WorkerInfo]:
        """See ``Queue.get_workers``."""
        return self._run(self._queue.get_workers())

    def get_metrics(self, kind: str, start: int | None = None, end: int | None = None) -> Metrics:
        """See ``Queue.get_metrics``."""
        return self._run(self._queue.get_metrics(kind, start, end))

    def rate_limit(self, ms: int) -> None:
        """See ``Queue.rate_limit``."""
        self._run(self._queue.rate_limit(ms))

    def get_rate_limit_ttl(self, max_jobs: int | None = None) -> int:
        """See ``Queue.get_rate_limit_ttl``."""
        return self._run(self._queue.get_rate_limit_ttl(max_jobs))

    def obliterate(self, force: bool = False) -> None:
        """See ``Queue.obliterate``."""
        self._run(self._queue.obliterate(force))

    def upsert_job_scheduler(self, scheduler_id: str, **definition: Any) -> JobScheduler:
        """See ``Queue.upsert_job_scheduler``."""
        return self._run(self._queue.upsert_job_scheduler(scheduler_id, **definition))

    def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """See ``Queue.remove_job_scheduler``."""
        return self._run(self._queue.remove_job_scheduler(scheduler_id))

    def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """See ``Queue.get_job_scheduler``."""
        return self._run(self._queue.get_job_scheduler(scheduler_id))

    def get_job_schedulers(self, start: int = 0, end: int = 49) -> list[JobScheduler]:
        """See ``Queue.get_job_schedulers``."""
        return self._run(self._queue.get_job_schedulers(start, end))

    def get_deduplication_job_id(self, dedup_id: str) -> str | None:
        """See ``Queue.get_deduplication_job_id``."""
        return self._run(self._queue.get_deduplication_job_id(dedup_id))

    def remove_deduplication_key(self, dedup_id: str, job_id: str | None = None) -> bool:
        """See ``Queue.remove_deduplication_key``."""
        return self._run(self._queue.remove_deduplication_key(dedup_id, job_id))

    def set_breaker(self, settings: Breaker) -> bool:
        """See ``Queue.set_breaker``."""
        return self._run(self._queue.set_breaker(settings))

    def get_breaker(self) -> BreakerState | None:
        """See ``Queue.get_breaker``."""
        return self._run(self._queue.get_breaker())

    def reset_breaker(self) -> bool:
        """See ``Queue.reset_breaker``."""
        return self._run(self._queue.reset_breaker())

    def remove_breaker(self) -> bool:
        """See ``Queue.remove_breaker``."""
        return self._run(self._queue.remove_breaker())


async def _make(name: str, connection: Connection, prefix: str, options: dict[str, Any]) -> Queue:
    return Queue(name, connection, prefix=prefix, **options)
