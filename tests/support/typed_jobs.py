"""Schemas (dataclasses and pydantic models), a ``JobTypes`` registry and processors for the
typed-job tests (importable by ``corral worker --types support.typed_jobs:TYPES``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pydantic

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


class OrderItem(pydantic.BaseModel):
    sku: str
    qty: int = pydantic.Field(gt=0)


class OrderJob(pydantic.BaseModel):
    """A pydantic schema: validated the pydantic way (``qty`` > 0, ``when`` parsed)."""

    email: str
    items: list[OrderItem]
    when: datetime


TYPES = JobTypes({"send-email": EmailJob, "place-order": OrderJob})
NOT_TYPES = {"send-email": EmailJob}  # a dict, not a JobTypes: refused by --types


async def typed_email(job: Job) -> Any:
    """Return what the processor was given: the schema's name and two fields."""
    email = job.typed_as(EmailJob)
    return {"schema": type(email).__name__, "to": email.to, "priority": email.priority.value}


def typed_email_sync(job: Job) -> Any:
    """``typed_email`` as a ``def`` processor (runs in a thread)."""
    email = job.typed_as(EmailJob)
    return {"schema": type(email).__name__, "to": email.to, "cc": email.cc}


async def typed_order(job: Job) -> Any:
    """Return what the processor was given for a pydantic ``OrderJob``."""
    order = job.typed_as(OrderJob)
    return {
        "schema": type(order).__name__,
        "item_types": sorted({type(item).__name__ for item in order.items}),
        "qty": sum(item.qty for item in order.items),
        "when": order.when.isoformat(),
    }


async def typed_job(job: Job) -> Any:
    """``typed_order`` for orders, ``typed_email`` for the rest: one processor, several names."""
    if job.name == "place-order":
        return await typed_order(job)
    return await typed_email(job)
