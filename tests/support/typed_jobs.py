"""Schemas, a ``JobTypes`` registry and processors for the typed-job tests (importable by
``corral worker --types support.typed_jobs:TYPES``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from engine import Job, JobTypes


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


@dataclass(frozen=True)
class Address:
    city: str
    zip: str | None = None


@dataclass(frozen=True)
class LineItem:
    sku: str
    qty: int


@dataclass(frozen=True)
class EmailJob:
    to: str
    subject: str
    priority: Priority = Priority.LOW
    send_at: datetime | None = None
    cc: list[str] = field(default_factory=list)
    kind: Literal["welcome", "receipt"] = "welcome"
    address: Address | None = None
    items: tuple[LineItem, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


TYPES = JobTypes({"send-email": EmailJob})
NOT_TYPES = {"send-email": EmailJob}  # a dict, not a JobTypes: refused by --types


async def typed_email(job: Job) -> Any:
    """Return what the processor was given: the schema's name and two fields."""
    email = job.typed_as(EmailJob)
    return {"schema": type(email).__name__, "to": email.to, "priority": email.priority.value}


def typed_email_sync(job: Job) -> Any:
    """``typed_email`` as a ``def`` processor (runs in a thread)."""
    email = job.typed_as(EmailJob)
    return {"schema": type(email).__name__, "to": email.to, "cc": email.cc}
