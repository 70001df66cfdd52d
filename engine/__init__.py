"""Corral's job engine: queues, workers and events on Redis.

Public API: ``Queue``, ``SyncQueue``, ``Worker``, ``Job``, ``JobState``, ``Backoff``,
``QueueEvents``, ``Event``, ``FlowProducer``/``SyncFlowProducer`` (with ``FlowNode``,
``JobRef``, ``Dependencies``) and the errors a caller handles.
"""

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
from .flow_model import Dependencies, JobRef
from .flows import FlowNode, FlowProducer
from .job import CorruptJob, Job, JobState
from .keys import QueueKeys
from .options import Backoff, JobOptions, Retention
from .queue import Queue
from .sync import SyncQueue
from .sync_flows import SyncFlowProducer
from .worker import Worker

__all__ = [
    "Backoff",
    "CorruptJob",
    "Dependencies",
    "EngineError",
    "Event",
    "FlowNode",
    "FlowProducer",
    "InvalidJobData",
    "InvalidJobOptions",
    "Job",
    "JobNotActive",
    "JobNotFound",
    "JobOptions",
    "JobRef",
    "JobState",
    "JobStateError",
    "LockLost",
    "PayloadTooLarge",
    "Queue",
    "QueueEvents",
    "QueueKeys",
    "Retention",
    "Retry",
    "SyncFlowProducer",
    "SyncQueue",
    "UnrecoverableError",
    "UnsafeServerConfig",
    "Worker",
]
