"""A processor and error policies for ``corral worker --error-policy`` tests: the job's data
names the error it raises (``key``: KeyError, ``connection``: ConnectionError)."""

from __future__ import annotations

from typing import Any

from engine import Backoff, ErrorPolicy, Job

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
