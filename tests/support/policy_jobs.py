"""Processors and error policies for the error-policy tests: for ``corral worker
--error-policy``, the job's data names the error it raises (``key``: KeyError, ``connection``:
ConnectionError); ``responds`` fails with an HTTP response made from its data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from engine import Backoff, ErrorPolicy, HttpError, Job

QUEUE_POLICY = ErrorPolicy(fail_on=(KeyError,), backoff={ConnectionError: Backoff.fixed(20)})
"""A missing key will not appear on a retry: fail at once; a lost connection may come back."""

NAME_POLICIES = {"charge": ErrorPolicy(fail_on=(ConnectionError,))}
"""A charge is never retried blindly: a connection lost mid-charge fails it at once."""

NOT_A_POLICY = {"retry_on": "everything"}


async def raises(job: Job) -> Any:
    """Raise the error ``data["error"]`` names."""
    error = job.data.get("error") if isinstance(job.data, dict) else None
    if error == "key":
        raise KeyError("customer_id")
    if error == "connection":
        raise ConnectionError("upstream reset the connection")
    return "ok"


@dataclass(frozen=True)
class Response:
    """An HTTP response as httpx and requests shape one (``status_code``, ``headers``,
    ``reason_phrase``): a plain value, so the tests need no HTTP client."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    reason_phrase: str = ""


async def responds(job: Job) -> Any:
    """On its first attempt, raise ``HttpError.from_response`` for the response that
    ``job.data`` describes (``status``, optional ``reason``, and a Retry-After of
    ``retry_after`` or of the HTTP date ``retry_after_date_in`` seconds from now); then
    succeed. Importable, so it runs sandboxed too."""
    if job.attempts_started > 1:
        return "ok"
    headers: dict[str, str] = {}
    if "retry_after" in job.data:
        headers["Retry-After"] = job.data["retry_after"]
    if "retry_after_date_in" in job.data:
        when = datetime.now(UTC) + timedelta(seconds=job.data["retry_after_date_in"])
        headers["Retry-After"] = format_datetime(when, usegmt=True)
    response = Response(job.data["status"], headers, job.data.get("reason", ""))
    HttpError.raise_for_status(response)
    return "not an error"
