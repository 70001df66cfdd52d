"""Corral's job engine: queues, workers and events on Redis.

Public API: ``Queue``, ``SyncQueue``, ``Worker``, ``Job``, ``JobState``, ``Backoff``,
``QueueEvents``, ``Event`` and the errors a caller handles.
"""

from .errors import (
    EngineError,
    HttpError,
    InvalidJobData,
    InvalidJobOptions,
    JobCancelled,
    JobNotActive,
    JobNotFound,
    JobStateError,
    JobTimeout,
    LockLost,
    PayloadTooLarge,
    Retry,
    UnrecoverableError,
    UnsafeServerConfig,
)
from .events import Event, QueueEvents
from .job import CorruptJob, Job, JobState
from .keys import QueueKeys
from .options import Backoff, JobOptions, Retention
from .policies import ErrorPolicy
from .queue import Queue
from .sync import SyncQueue
from .worker import Worker

__all__ = [
    "Backoff",
    "CorruptJob",
    "EngineError",
    "ErrorPolicy",
    "Event",
    "HttpError",
    "InvalidJobData",
    "InvalidJobOptions",
    "Job",
    "JobCancelled",
    "JobNotActive",
    "JobNotFound",
    "JobOptions",
    "JobState",
    "JobStateError",
    "JobTimeout",
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
