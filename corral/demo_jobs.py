"""The processors ``corral demo`` runs: fast jobs that sometimes fail, long jobs with progress,
flaky webhooks, and CPU-ish work in threads. Each looks at its data to decide what to do."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from typing import Any

from engine import Job, UnrecoverableError


async def send_email(job: Job) -> Any:
    """20-200 ms; about 4 % fail (retried with backoff), bad addresses fail for good."""
    await asyncio.sleep(random.uniform(0.02, 0.2))
    if "@" not in str(job.data.get("to", "")):
        raise UnrecoverableError(f"not an email address: {job.data.get('to')!r}")
    if random.random() < 0.04:
        raise ConnectionError("SMTP server closed the connection")
    return {"message_id": hashlib.sha1(str(job.id).encode()).hexdigest()[:12]}


async def build_report(job: Job) -> Any:
    """Runs for several seconds, reporting progress by stage."""
    pages = int(job.data.get("pages", 10))
    for page in range(1, pages + 1):
        await asyncio.sleep(random.uniform(0.3, 0.9))
        await job.update_progress({"stage": "render", "page": page, "pct": page * 100 // pages})
        if page % 4 == 0:
            await job.log(f"rendered page {page} of {pages}")
    return {"pages": pages, "bytes": pages * 48_213}


async def deliver_webhook(job: Job) -> Any:
    """A remote endpoint that is down a third of the time, and 410 Gone for some hooks."""
    await asyncio.sleep(random.uniform(0.01, 0.05))
    if job.data.get("gone"):
        raise UnrecoverableError("HTTP 410 Gone: endpoint removed")
    if random.random() < 0.33:
        raise RuntimeError("HTTP 503 Service Unavailable")
    return {"status": 200}


def make_thumbnail(job: Job) -> Any:
    """A ``def`` processor (runs in a thread): hashes for a while, like resizing an image."""
    digest = hashlib.sha256(str(job.data).encode())
    deadline = time.monotonic() + random.uniform(0.05, 0.3)
    while time.monotonic() < deadline:
        digest.update(digest.digest())
    return {"thumb": digest.hexdigest()[:16]}
