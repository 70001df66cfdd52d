"""Corral's job engine: queues, workers and events on Redis.

Public API: ``Queue``, ``SyncQueue``, ``Worker``, ``Job``, ``JobState``, ``Backoff``,
``QueueEvents``, ``Event``, ``JobScheduler``, ``Deduplication``, ``Breaker``, ``BreakerState``,
``JobTypes`` and the errors a caller handles.
"""

from .breaker import Breaker, BreakerState
from .deduplication import Deduplication
from .errors import (
    EngineError,
    InvalidJobData,
    InvalidJobOptions,
    JobNotActive,
    JobNotFound,
    JobStateError,
    LockLost,
    PayloadTooLarge,
    Retry,
    UnrecoverableError,
    UnsafeServerConfig,
)
from .events import Event, QueueEvents
from .job import CorruptJob, Job, JobState
from .job_types import JobTypes
from .keys import QueueKeys
from .options import Backoff, JobOptions, Retention
from .queue import Queue
from .schedulers import JobScheduler
from .sync import SyncQueue
from .worker import Worker

__all__ = [
    "Backoff",
    "Breaker",
    "BreakerState",
    "CorruptJob",
    "Deduplication",
    "EngineError",
    "Event",
    "InvalidJobData",
    "InvalidJobOptions",
    "Job",
    "JobNotActive",
    "JobNotFound",
    "JobOptions",
    "JobScheduler",
    "JobState",
    "JobStateError",
    "JobTypes",
    "LockLost",
    "PayloadTooLarge",
    "Queue",
    "QueueEvents",
    "QueueKeys",
    "Retention",
    "Retry",
    "SyncQueue",
    "UnrecoverableError",
    "UnsafeServerConfig",
    "Worker",
]
