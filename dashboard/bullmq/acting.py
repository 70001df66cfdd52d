"""``BullMQActor``: actions on BullMQ queues exactly as BullMQ does them, with BullMQ's own Lua
scripts run by the official ``bullmq`` Python package (the optional extra ``corral[bullmq]``,
pinned to ``PINNED_VERSION``, whose action scripts are byte for byte those of Node BullMQ 6.7).

A package ``Queue`` is constructed only when an action runs (lazily, once per queue and client),
never for reading. Before each script the actor checks what the scripts do not: that the queue's
layout lets BullMQ 6 scripts act (``agreement.refusal``) and that the job is in the state the
action needs. Active jobs are never changed: a Node worker holds them. The scripts check the
state again atomically (and ``removeJob`` refuses a locked job), so a job that moved on in the
meantime is reported, not changed.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from dashboard.actions import ReadOnlyError
from dashboard.backend import ActionRefused
from dashboard.bullmq.agreement import Change, refusal
from dashboard.bullmq.job_reads import read_job_state
from dashboard.bullmq.keys import BullKeys
from dashboard.bullmq.layout import QueueLayout

PINNED_VERSION = "3.4.4"
"""The one ``bullmq`` package version whose scripts the dashboard was verified with."""
PRIORITY_LIMIT = 2**21
"""BullMQ's highest priority number (1 runs first; 0 is none)."""
BATCH = 1_000
"""Jobs one ``moveJobsToWait`` call moves (BullMQ's own default)."""
REQUIRED_API: dict[str, tuple[str, ...]] = {
    "Queue": ("pause", "resume", "retryJobs", "promoteJobs", "clean", "remove"),
    "Job": ("fromId", "retry", "promote", "changePriority"),
}
"""The package API the actions call, checked before the first one runs."""
FAILED = frozenset({"failed"})
DELAYED = frozenset({"delayed"})
RETRYABLE = frozenset({"failed", "completed"})
"""States BullMQ's ``Job.retry`` takes a job from."""
PRIORITY_STATES = frozenset({"wait", "prioritized", "delayed", "waiting-children"})
"""States whose priority may change: the job is not running and will be placed by it."""


class BullMQRefusal(ReadOnlyError):
    """An action the dashboard will not run on a BullMQ queue; the message says why."""


def _server_ms(reply: tuple[Any, Any]) -> int:
    seconds, micros = reply
    return int(seconds) * 1000 + int(micros) // 1000


def load_package(what: str) -> Any:
    """The ``bullmq`` module, if it is the pinned version with every call the actions use."""
    try:
        package = importlib.import_module("bullmq")
    except ImportError:
        raise BullMQRefusal(
            f"{what} refused: acting on BullMQ queues needs the bullmq package: "
            "pip install 'corral[bullmq]'"
        ) from None
    version = getattr(package, "__version__", "?")
    if version != PINNED_VERSION:
        raise BullMQRefusal(
            f"{what} refused: bullmq {version} is installed, but the dashboard acts only with "
            f"bullmq {PINNED_VERSION}, whose scripts it was verified with: "
            "pip install 'corral[bullmq]'"
        )
    for name, calls in REQUIRED_API.items():
        missing = [call for call in calls if not callable(getattr(getattr(package, name), call))]
        if missing:
            raise BullMQRefusal(f"{what} refused: bullmq has no {name}.{missing[0]}")
    return package


class BullMQActor:
    """Runs BullMQ's scripts on the queues of one prefix, through the ``bullmq`` package."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._queues: dict[str, tuple[Redis, Any]] = {}

    def _queue(self, client: Redis, name: str, what: str) -> Any:
        """The package's ``Queue`` for ``name`` on ``client``, constructed on first use."""
        known = self._queues.get(name)
        if known is not None and known[0] is client:
            return known[1]
        package = load_package(what)
        if not client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("BullMQ actions need a client made with decode_responses=True")
        # the client stays the caller's: this queue is never closed (that would close it)
        queue = package.Queue(name, {"connection": client, "prefix": self.prefix})
        self._queues[name] = (client, queue)
        return queue

    def _check_layout(self, what: str, change: Change, queue: str, layout: QueueLayout) -> None:
        reason = refusal(what, change, queue, layout)
        if reason is not None:
            raise BullMQRefusal(reason)

    async def _state(self, client: Redis, queue: str, job_id: str) -> str | None:
        return await read_job_state(client, BullKeys(self.prefix, queue), job_id)

    async def _require(
        self, client: Redis, queue: str, job_id: str, states: frozenset[str], what: str
    ) -> None:
        state = await self._state(client, queue, job_id)
        if state is None:
            raise ActionRefused(f"not {what}: job {job_id!r} no longer exists", None)
        if state not in states:
            raise ActionRefused(f"not {what}: job {job_id!r} is {state}", state)

    async def _run_on_job(
        self,
        client: Redis,
        queue: str,
        job_id: str,
        states: frozenset[str],
        what: str,
        run: Callable[[Any], Awaitable[Any]],
    ) -> None:
        """Check the job is in one of ``states``, load it and run ``run(job)``; a job that moved
        on before the script ran is reported, not changed (the script checks atomically)."""
        await self._require(client, queue, job_id, states, what)
        package = load_package(what)
        bull_queue = self._queue(client, queue, what)
        job = await package.Job.fromId(bull_queue, job_id)
        if job is None:
            raise ActionRefused(f"not {what}: job {job_id!r} no longer exists", None)
        try:
            await run(job)
        except TypeError as exc:  # the package's error for the scripts' -1 / -3 codes
            state = await self._state(client, queue, job_id)
            if state in states:  # the job did not move: not a refusal, a failure
                raise
            raise ActionRefused(f"not {what}: {exc}", state) from exc

    # -- one job -----------------------------------------------------------------------------

    async def retry(
        self, client: Redis, queue: str, job_id: str, layout: QueueLayout, state: str = "failed"
    ) -> None:
        """``Job.retry(state)`` (BullMQ's ``reprocessJob``) on a failed or completed job."""
        if state not in RETRYABLE:
            raise ActionRefused(f"not retried: job {job_id!r} is {state}", state)
        self._check_layout("retry", Change.READY, queue, layout)
        await self._run_on_job(
            client, queue, job_id, frozenset({state}), "retried", lambda job: job.retry(state)
        )

    async def promote(self, client: Redis, queue: str, job_id: str, layout: QueueLayout) -> None:
        """``Job.promote()`` (BullMQ's ``promote``) on a delayed job."""
        self._check_layout("promote", Change.READY, queue, layout)
        await self._run_on_job(
            client, queue, job_id, DELAYED, "promoted", lambda job: job.promote()
        )

    async def change_priority(
        self, client: Redis, queue: str, job_id: str, priority: int, layout: QueueLayout
    ) -> None:
        """``Job.changePriority`` on a job that is not running or finished."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError(f"priority {priority!r} is invalid: expected an int")
        if not 0 <= priority <= PRIORITY_LIMIT:
            raise ValueError(
                f"priority {priority} is invalid: BullMQ takes 0 (none) to {PRIORITY_LIMIT}"
            )
        self._check_layout("change priority", Change.READY, queue, layout)
        # a worker that takes the job between the check and the script finds only its
        # priority field changed, which BullMQ reads when it places a job, never while it runs
        await self._run_on_job(
            client,
            queue,
            job_id,
            PRIORITY_STATES,
            "reprioritized",
            lambda job: job.changePriority({"priority": priority}),
        )

    async def remove(self, client: Redis, queue: str, job_id: str) -> None:
        """``Queue.remove`` (BullMQ's ``removeJob``, children too) on a job no worker holds."""
        what = "discarded"
        state = await self._state(client, queue, job_id)
        if state is None:
            raise ActionRefused(f"not {what}: job {job_id!r} no longer exists", None)
        if state == "active":
            raise ActionRefused(f"not {what}: job {job_id!r} is active", state)
        bull_queue = self._queue(client, queue, "discard")
        code = await bull_queue.remove(job_id, {"removeChildren": True})
        if code == -8:
            raise BullMQRefusal(
                f"discard refused: job {job_id!r} is the next run of a job scheduler; "
                "BullMQ removes it only with its scheduler"
            )
        if code != 1:  # 0: the job, or one of its children, is locked by a worker
            state = await self._state(client, queue, job_id)
            raise ActionRefused(f"not {what}: a worker holds job {job_id!r}", state or "active")

    # -- the queue ---------------------------------------------------------------------------

    async def promote_all(self, client: Redis, queue: str, layout: QueueLayout) -> int:
        """``Queue.promoteJobs``: every delayed job to wait (BullMQ ignores their priority)."""
        self._check_layout("promote all", Change.READY, queue, layout)
        bull_queue = self._queue(client, queue, "promote all")
        delayed = BullKeys(self.prefix, queue).state("delayed")
        before = int(await client.zcard(delayed))
        await bull_queue.promoteJobs({"count": BATCH})
        return max(before - int(await client.zcard(delayed)), 0)

    async def pause(self, client: Redis, queue: str, layout: QueueLayout) -> None:
        """``Queue.pause``: workers take nothing; running jobs go on."""
        self._check_layout("pause", Change.PAUSE, queue, layout)
        await self._queue(client, queue, "pause").pause()

    async def resume(self, client: Redis, queue: str, layout: QueueLayout) -> None:
        """``Queue.resume``: workers take jobs again."""
        self._check_layout("resume", Change.RESUME, queue, layout)
        await self._queue(client, queue, "resume").resume()

    async def clean(
        self, client: Redis, queue: str, state: str, grace_ms: int, limit: int
    ) -> list[str]:
        """``Queue.clean``: up to ``limit`` completed or failed jobs finished over ``grace_ms``
        ago (by the local clock, as BullMQ does)."""
        if state not in ("completed", "failed"):
            raise ValueError(f"state {state!r} is invalid: expected 'completed' or 'failed'")
        if isinstance(grace_ms, bool) or not isinstance(grace_ms, int) or grace_ms < 0:
            raise ValueError(f"grace {grace_ms!r} is invalid: expected an int >= 0 (ms)")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit {limit!r} is invalid: expected an int >= 1")
        bull_queue = self._queue(client, queue, "clean")
        removed = await bull_queue.clean(grace_ms, limit, state)
        return [str(job_id) for job_id in removed]
