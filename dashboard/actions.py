"""``JobActions``: the dashboard's only way to change queues, refused in read-only mode.

Every action goes through the backend (so through ``engine.Queue`` for Corral queues) and comes
back as a short outcome message, e.g. "not retried: job '7' is now completed".
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket

from redis.asyncio import Redis

from dashboard.backend import ActionRefused, Backend
from dashboard.bulk import BULK_BATCH, BulkRun, Selection, retry_outcome
from dashboard.notifications import CONFIG_KEY

BATCH_PAUSE_S = 0.005
"""Pause between the batches of a bulk action, so other clients are served in between."""


class ReadOnlyError(PermissionError):
    """An action was asked of a read-only dashboard."""


class JobActions:
    """Retry, discard, promote, pause/resume and clean, on their own connection."""

    def __init__(self, backend: Backend, client: Redis | None, read_only: bool) -> None:
        self.backend = backend
        self._client = client
        self.read_only = read_only
        self.batch_size = BULK_BATCH
        self.batch_pause = BATCH_PAUSE_S

    def _writer(self, what: str) -> Redis:
        if self.read_only or self._client is None:
            raise ReadOnlyError(f"read-only mode: {what} refused")
        return self._client

    async def retry(self, queue: str, job_id: str, state: str = "failed") -> str:
        """Retry one job that is still in ``state`` (failed or completed), as the operator saw."""
        client = self._writer("retry")
        try:
            await self.backend.retry_job(client, queue, job_id, state)
        except ActionRefused as exc:
            return _refused("retried", job_id, exc)
        return f"retried job {job_id!r}: back in wait"

    async def retry_selected(self, selection: Selection, run: BulkRun) -> str:
        """Retry exactly the selected jobs still in their state, batch by batch, until done or
        ``run`` is stopped; says how many were retried and why the others were not."""
        client = self._writer("retry all")
        not_retried: dict[str, str | None] = {}
        attempted = 0
        for start in range(0, len(selection.ids), self.batch_size):
            if run.stop_requested:
                break
            if start:
                await asyncio.sleep(self.batch_pause)
            chunk = selection.ids[start : start + self.batch_size]
            missed = await self.backend.retry_job_ids(
                client, selection.queue, chunk, selection.state
            )
            not_retried.update(missed)
            attempted += len(chunk)
            run.advance(len(chunk))
        return retry_outcome(selection, attempted, not_retried)

    async def discard(self, queue: str, job_id: str) -> str:
        """Remove one job that no worker holds."""
        client = self._writer("discard")
        try:
            await self.backend.remove_job(client, queue, job_id)
        except ActionRefused as exc:
            return _refused("discarded", job_id, exc)
        return f"discarded job {job_id!r}"

    async def cancel(self, queue: str, job_id: str) -> str:
        """Cancel a waiting or running job, in the operator's name."""
        client = self._writer("cancel")
        try:
            done = await self.backend.cancel_job(client, queue, job_id, operator())
        except ActionRefused as exc:
            return _refused("cancelled", job_id, exc)
        if done:
            return f"cancelled job {job_id!r}: failed"
        return f"cancel of running job {job_id!r} requested: its worker stops it"

    async def promote(self, queue: str, job_id: str) -> str:
        """Run a delayed job now."""
        client = self._writer("promote")
        try:
            await self.backend.promote_job(client, queue, job_id)
        except ActionRefused as exc:
            return _refused("promoted", job_id, exc)
        return f"promoted job {job_id!r}"

    async def set_paused(self, queue: str, paused: bool) -> str:
        """Pause or resume a queue."""
        client = self._writer("pause" if paused else "resume")
        if paused:
            await self.backend.pause(client, queue)
            return f"paused {queue!r}"
        await self.backend.resume(client, queue)
        return f"resumed {queue!r}"

    async def enable_notifications(self, flags: str) -> str:
        """``CONFIG SET notify-keyspace-events <flags>``, asked for by the operator."""
        client = self._writer("CONFIG SET")
        await client.config_set(CONFIG_KEY, flags)
        return f"ran CONFIG SET {CONFIG_KEY} {flags}: live updates"

    async def clean(
        self, queue: str, state: str, grace_ms: int, limit: int, run: BulkRun | None = None
    ) -> str:
        """Remove up to ``limit`` completed or failed jobs older than ``grace_ms``, a batch at a
        time, until done or ``run`` is stopped."""
        client = self._writer("clean")
        run = run if run is not None else BulkRun(limit)
        removed = 0
        while removed < limit and not run.stop_requested:
            if removed:
                await asyncio.sleep(self.batch_pause)
            batch = min(self.batch_size, limit - removed)
            ids = await self.backend.clean(client, queue, state, grace_ms, batch)
            removed += len(ids)
            run.advance(len(ids))
            if len(ids) < batch:
                break
        text = f"removed {removed:,} {state} job{'s' if removed != 1 else ''}"
        if run.stop_requested and removed < limit:
            text += f"; stopped: {limit - removed:,} not attempted"
        return text


def operator() -> str:
    """Who acts, for reasons like "cancelled by ann@worker-3 (dashboard)"."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()} (dashboard)"[:200]


def _refused(verb: str, job_id: str, exc: ActionRefused) -> str:
    if exc.state is None:
        return f"not {verb}: job {job_id!r} no longer exists"
    return f"not {verb}: job {job_id!r} is now {exc.state}"
