"""``JobActions``: the dashboard's only way to change queues, refused in read-only mode.

Every action goes through the backend (so through ``engine.Queue`` for Corral queues) and comes
back as a short outcome message, e.g. "not retried: job '7' is now completed".
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from collections.abc import Sequence

from redis.asyncio import Redis

from dashboard.backend import ActionRefused, Backend
from dashboard.bulk import BULK_BATCH, BulkRun, Selection, retry_outcome
from dashboard.notifications import CONFIG_KEY
from dashboard.replay_text import replay_message

PROMOTE_ALL_LIMIT = 100_000
"""Most delayed jobs one "promote all" makes ready (the engine works in bounded batches)."""

BATCH_PAUSE_S = 0.005
"""Pause between the batches of a bulk action, so other clients are served in between."""


class ReadOnlyError(PermissionError):
    """An action was asked of a read-only dashboard."""


class JobActions:
    """Retry, discard, promote, reprioritize, pause/resume and clean, on their own connection."""

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

    async def replay(self, queue: str, ids: Sequence[str]) -> str:
        """Send these dead letters of a dead-letter queue back to their origin queues."""
        client = self._writer("replay")
        outcome = await self.backend.replay_dead_letters(client, queue, ids, None)
        return replay_message(queue, outcome)

    async def replay_oldest(self, queue: str, count: int) -> str:
        """Send the oldest ``count`` dead letters back (all those there when confirmed)."""
        client = self._writer("replay all")
        outcome = await self.backend.replay_dead_letters(client, queue, None, count)
        return replay_message(queue, outcome)

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

    async def promote_all(self, queue: str, count: int = PROMOTE_ALL_LIMIT) -> str:
        """Run the delayed jobs of a queue now."""
        client = self._writer("promote all")
        promoted = await self.backend.promote_all(client, queue, count)
        return f"promoted {promoted} delayed job{'s' if promoted != 1 else ''} of {queue!r}"

    async def change_priority(self, queue: str, job_id: str, priority: int) -> str:
        """Give a job that is not running a new priority."""
        client = self._writer("change priority")
        try:
            await self.backend.change_priority(client, queue, job_id, priority)
        except ActionRefused as exc:
            return _refused("reprioritized", job_id, exc)
        return f"job {job_id!r} now has priority {priority}"

    async def set_paused(self, queue: str, paused: bool) -> str:
        """Pause or resume a queue."""
        client = self._writer("pause" if paused else "resume")
        if paused:
            await self.backend.pause(client, queue)
            return f"paused {queue!r}"
        await self.backend.resume(client, queue)
        return f"resumed {queue!r}"

    async def breaker(self, queue: str, remove: bool) -> str:
        """Close the queue's circuit breaker now, or take it off the queue."""
        if remove:
            client = self._writer("breaker remove")
            if await self.backend.remove_breaker(client, queue):
                return f"removed the circuit breaker of {queue!r}"
            return f"queue {queue!r} has no circuit breaker"
        client = self._writer("breaker reset")
        if await self.backend.reset_breaker(client, queue):
            return f"closed the circuit breaker of {queue!r}: its jobs run again"
        return f"the circuit breaker of {queue!r} was closed already"

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
