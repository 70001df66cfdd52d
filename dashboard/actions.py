"""``JobActions``: the dashboard's only way to change queues, refused in read-only mode, while
the server may evict keys (R5: any ``maxmemory-policy`` but ``noeviction``, or one that cannot be
read, unless the operator overrode it with ``--allow-unsafe-eviction``), and on a replica (Z2:
checked with ``INFO replication`` before each action writes anything, and a ``READONLY`` reply
turned into the same one-line reason).

Every action goes through the backend (so through ``engine.Queue`` for Corral queues) and comes
back as a short outcome message, e.g. "not retried: job '7' is now completed".
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import ReadOnlyError as ReadOnlyReplyError

from dashboard.backend import ActionRefused, Backend, PromotesJobIds
from dashboard.bulk import BULK_BATCH, BulkRun, Selection, selection_outcome, stopped_note
from dashboard.conn_errors import READ_ONLY_REPLICA
from dashboard.eviction import action_refusal, is_evicting
from dashboard.model import ReplayOutcome
from dashboard.notifications import CONFIG_KEY
from dashboard.replay_text import replay_message
from dashboard.sanitize import quoted
from dashboard.server_role import replica_refusal

PROMOTE_ALL_LIMIT = 100_000
"""Most delayed jobs one "promote all" makes ready (the engine works in bounded batches)."""

BATCH_PAUSE_S = 0.005
"""Pause between the batches of a bulk action, so other clients are served in between."""


class ActionsOff(PermissionError):
    """An action was refused before it reached the server; the message says why."""


class ReadOnlyError(ActionsOff):
    """An action was asked of a read-only dashboard."""


class UnsafeServerError(ActionsOff):
    """An action was asked while the server's eviction policy may lose jobs."""


class ReplicaServerError(ActionsOff):
    """An action was asked of a replica, whose data only its primary may change."""


class JobActions:
    """Retry, discard, promote, reprioritize, pause/resume and clean, on their own connection."""

    def __init__(
        self,
        backend: Backend,
        client: Redis | None,
        read_only: bool,
        *,
        allow_unsafe_eviction: bool = False,
    ) -> None:
        self.backend = backend
        self._client = client
        self.read_only = read_only
        self.allow_unsafe_eviction = allow_unsafe_eviction
        self.server_policy: str | None = None
        """The server's ``maxmemory-policy`` as the monitor last read it (None: not known)."""
        self.server_replica: str | None = None
        """Why not to write: the server is a replica, as the monitor last read it (None: a
        primary, or not known)."""
        self.batch_size = BULK_BATCH
        self.batch_pause = BATCH_PAUSE_S

    def refusal(self) -> str | None:
        """Why no action may run now, or None when they may."""
        if self.read_only or self._client is None:
            return "read-only mode: actions are off"
        if self.server_replica is not None:
            return f"refused: {self.server_replica}"
        if is_evicting(self.server_policy) and not self.allow_unsafe_eviction:
            return action_refusal(str(self.server_policy))
        return None

    def _writer(self, what: str) -> Redis:
        if self.read_only or self._client is None:
            raise ReadOnlyError(f"read-only mode: {what} refused")
        if self.server_replica is not None:
            raise ReplicaServerError(f"{what} refused: {self.server_replica}")
        unsafe = self.refusal()
        if unsafe is not None:
            raise UnsafeServerError(f"{what} {unsafe}")
        return self._client

    @asynccontextmanager
    async def _acting(self, what: str) -> AsyncIterator[Redis]:
        """The client to act with, once no rule refuses ``what`` and the server is no replica;
        a ``READONLY`` reply inside (a node demoted since the check) says the same."""
        client = self._writer(what)
        replica = await replica_refusal(client)
        if replica is not None:
            raise ReplicaServerError(f"{what} refused: {replica}")
        try:
            yield client
        except ReadOnlyReplyError as exc:
            raise ReplicaServerError(f"{what} refused: {READ_ONLY_REPLICA}") from exc

    async def retry(self, queue: str, job_id: str, state: str = "failed") -> str:
        """Retry one job that is still in ``state`` (failed or completed), as the operator saw."""
        async with self._acting("retry") as client:
            try:
                await self.backend.retry_job(client, queue, job_id, state)
            except ActionRefused as exc:
                return _refused("retried", job_id, exc)
            return f"retried job {quoted(job_id)}: back in wait"

    async def _in_batches(
        self,
        selection: Selection,
        run: BulkRun,
        act: Callable[[Sequence[str]], Awaitable[None]],
    ) -> int:
        """``act`` on the selected ids a batch at a time until done or ``run`` is stopped (a
        short pause between batches); how many ids were attempted."""
        attempted = 0
        for start in range(0, len(selection.ids), self.batch_size):
            if run.stop_requested:
                break
            if start:
                await asyncio.sleep(self.batch_pause)
            chunk = selection.ids[start : start + self.batch_size]
            await act(chunk)
            attempted += len(chunk)
            run.advance(len(chunk))
        return attempted

    async def retry_selected(self, selection: Selection, run: BulkRun) -> str:
        """Retry exactly the selected jobs still in their state, batch by batch, until done or
        ``run`` is stopped; says how many were retried and why the others were not."""
        async with self._acting("retry all") as client:
            missed: dict[str, str | None] = {}

            async def retry(chunk: Sequence[str]) -> None:
                queue, state = selection.queue, selection.state
                missed.update(await self.backend.retry_job_ids(client, queue, chunk, state))

            attempted = await self._in_batches(selection, run, retry)
            return selection_outcome("retried", selection, attempted, missed)

    async def promote_selected(self, selection: Selection, run: BulkRun) -> str:
        """Promote exactly the selected delayed jobs that are still delayed, batch by batch,
        until done or ``run`` is stopped; says how many were promoted and why not the others."""
        async with self._acting("promote all") as client:
            missed: dict[str, str | None] = {}

            async def promote(chunk: Sequence[str]) -> None:
                missed.update(await self._promote_ids(client, selection.queue, chunk))

            attempted = await self._in_batches(selection, run, promote)
            return selection_outcome("promoted", selection, attempted, missed)

    async def _promote_ids(
        self, client: Redis, queue: str, job_ids: Sequence[str]
    ) -> dict[str, str | None]:
        """Promote these jobs if still delayed (a backend without a batch call: one by one);
        the ones not promoted, with the state each is in now (None: gone)."""
        if isinstance(self.backend, PromotesJobIds):
            return await self.backend.promote_job_ids(client, queue, job_ids)
        missed: dict[str, str | None] = {}
        for job_id in job_ids:
            try:
                await self.backend.promote_job(client, queue, job_id)
            except ActionRefused as exc:
                missed[job_id] = exc.state
        return missed

    async def replay(self, queue: str, ids: Sequence[str]) -> str:
        """Send these dead letters of a dead-letter queue back to their origin queues."""
        async with self._acting("replay") as client:
            outcome = await self.backend.replay_dead_letters(client, queue, ids, None)
            return replay_message(queue, outcome)

    async def replay_selected(self, selection: Selection, run: BulkRun) -> str:
        """Replay exactly the selected dead letters (those still here), batch by batch, until
        done or ``run`` is stopped; says where they went and which stayed, and why."""
        async with self._acting("replay all") as client:
            replayed: list[tuple[str, str, str]] = []
            skipped: list[tuple[str, str]] = []

            async def replay(chunk: Sequence[str]) -> None:
                outcome = await self.backend.replay_dead_letters(
                    client, selection.queue, chunk, None
                )
                replayed.extend(outcome.replayed)
                skipped.extend(outcome.skipped)

            attempted = await self._in_batches(selection, run, replay)
            outcome = ReplayOutcome(replayed=tuple(replayed), skipped=tuple(skipped))
            left = len(selection.ids) - attempted
            return replay_message(selection.queue, outcome) + stopped_note(left)

    async def discard(self, queue: str, job_id: str) -> str:
        """Remove one job that no worker holds."""
        async with self._acting("discard") as client:
            try:
                await self.backend.remove_job(client, queue, job_id)
            except ActionRefused as exc:
                return _refused("discarded", job_id, exc)
            return f"discarded job {quoted(job_id)}"

    async def cancel(self, queue: str, job_id: str) -> str:
        """Cancel a waiting or running job, in the operator's name."""
        async with self._acting("cancel") as client:
            try:
                done = await self.backend.cancel_job(client, queue, job_id, operator())
            except ActionRefused as exc:
                return _refused("cancelled", job_id, exc)
            if done:
                return f"cancelled job {quoted(job_id)}: failed"
            return f"cancel of running job {quoted(job_id)} requested: its worker stops it"

    async def promote(self, queue: str, job_id: str) -> str:
        """Run a delayed job now."""
        async with self._acting("promote") as client:
            try:
                await self.backend.promote_job(client, queue, job_id)
            except ActionRefused as exc:
                return _refused("promoted", job_id, exc)
            return f"promoted job {quoted(job_id)}"

    async def promote_all(self, queue: str, count: int = PROMOTE_ALL_LIMIT) -> str:
        """Run the delayed jobs of a queue now."""
        async with self._acting("promote all") as client:
            promoted = await self.backend.promote_all(client, queue, count)
            return (
                f"promoted {promoted} delayed job{'s' if promoted != 1 else ''} of {quoted(queue)}"
            )

    async def change_priority(self, queue: str, job_id: str, priority: int) -> str:
        """Give a job that is not running a new priority."""
        async with self._acting("change priority") as client:
            try:
                await self.backend.change_priority(client, queue, job_id, priority)
            except ActionRefused as exc:
                return _refused("reprioritized", job_id, exc)
            return f"job {quoted(job_id)} now has priority {priority}"

    async def set_paused(self, queue: str, paused: bool) -> str:
        """Pause or resume a queue."""
        async with self._acting("pause" if paused else "resume") as client:
            if paused:
                await self.backend.pause(client, queue)
                return f"paused {quoted(queue)}"
            await self.backend.resume(client, queue)
            return f"resumed {quoted(queue)}"

    async def breaker(self, queue: str, remove: bool) -> str:
        """Close the queue's circuit breaker now, or take it off the queue."""
        async with self._acting("breaker remove" if remove else "breaker reset") as client:
            if remove:
                if await self.backend.remove_breaker(client, queue):
                    return f"removed the circuit breaker of {quoted(queue)}"
                return f"queue {quoted(queue)} has no circuit breaker"
            if await self.backend.reset_breaker(client, queue):
                return f"closed the circuit breaker of {quoted(queue)}: its jobs run again"
            return f"the circuit breaker of {quoted(queue)} was closed already"

    async def enable_notifications(self, flags: str) -> str:
        """``CONFIG SET notify-keyspace-events <flags>``, asked for by the operator (a replica
        takes it too: it notifies of the writes its primary sends it)."""
        client = self._writer("CONFIG SET")
        await client.config_set(CONFIG_KEY, flags)
        return f"ran CONFIG SET {CONFIG_KEY} {flags}: live updates"

    async def clean(
        self, queue: str, state: str, grace_ms: int, limit: int, run: BulkRun | None = None
    ) -> str:
        """Remove up to ``limit`` completed or failed jobs older than ``grace_ms``, a batch at a
        time, until done or ``run`` is stopped."""
        async with self._acting("clean") as client:
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
        return f"not {verb}: job {quoted(job_id)} no longer exists"
    return f"not {verb}: job {quoted(job_id)} is now {exc.state}"
