"""Corral's job engine: queues, workers and events on Redis.

Public API: ``Queue``, ``SyncQueue``, ``Worker``, ``Job``, ``JobState``, ``Backoff``,
``QueueEvents``, ``Event``, ``FlowProducer``/``SyncFlowProducer`` (with ``FlowNode``,
``JobRef``, ``Dependencies``), ``JobScheduler``, ``Deduplication``, ``RateLimit``,
``WorkerInfo``, ``Breaker``/``BreakerState``, ``JobTypes`` and the errors a caller handles.
"""

from .breaker import Breaker, BreakerState
from .deduplication import Deduplication
from .errors import (
    ClusterNotSupported,
    DelayedError,
    DurabilityNotConfirmed,
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
    RateLimitError,
    Retry,
    UnrecoverableError,
    UnsafeServerConfig,
)
from .events import Event, QueueEvents
from .flow_model import Dependencies, JobRef
from .flows import FlowNode, FlowProducer
from .job import CorruptJob, Job, JobState
from .job_types import JobTypes
from .keys import QueueKeys
from .options import Backoff, JobOptions, Retention
from .policies import ErrorPolicy
from .queue import Queue
from .rate_limit import RateLimit
from .schedulers import JobScheduler
from .sync import SyncQueue
from .sync_flows import SyncFlowProducer
from .worker import Worker
from .worker_info import WorkerInfo

__all__ = [
    "Backoff",
    "Breaker",
    "BreakerState",
    "ClusterNotSupported",
    "CorruptJob",
    "Deduplication",
    "DelayedError",
    "Dependencies",
    "DurabilityNotConfirmed",
    "EngineError",
    "ErrorPolicy",
    "Event",
    "FlowNode",
    "FlowProducer",
    "HttpError",
    "InvalidJobData",
    "InvalidJobOptions",
    "Job",
    "JobCancelled",
    "JobNotActive",
    "JobNotFound",
    "JobOptions",
    "JobRef",
    "JobScheduler",
    "JobState",
    "JobStateError",
    "JobTimeout",
    "JobTypes",
    "LockLost",
    "PayloadTooLarge",
    "Queue",
    "QueueEvents",
    "QueueKeys",
    "RateLimit",
    "RateLimitError",
    "Retention",
    "Retry",
    "SyncFlowProducer",
    "SyncQueue",
    "UnrecoverableError",
    "UnsafeServerConfig",
    "Worker",
    "WorkerInfo",
]
