"""Dead-letter queues: where a worker sends jobs that failed for good, and replaying them.

A dead-letter queue is an ordinary queue (same layout, found by the same discovery) whose
``failed`` state holds dead letters; ``meta`` has ``dead_letter = 1``. ``dead_letter_job.lua``
moves a job there atomically as it fails; ``replay_dead_letters.lua`` puts dead letters back on
the queue each came from, with fresh attempts, one bounded batch per origin queue per call.
A cancelled job is not dead-lettered: someone meant it to stop.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from . import commands
from .job import F
from .keys import QueueKeys
from .options import Retention
from .processing import Outcome
from .scripts import ScriptRegistry

log = logging.getLogger("corral.worker")

REPLAY_BATCH = 100  # dead letters per script call: each one copies a hash and pushes a job
DEFAULT_MAX_EVENTS = 10_000  # events kept by a queue these scripts create (as Queue's default)

_SKIPPED = {0: "not a dead letter here", 2: "the origin queue has a job with that id"}


@dataclass(slots=True)
class ReplayResult:
    """Which dead letters went back (``replayed``, as ``(queue, id)`` there) and which did not,
    with why (``skipped``)."""

    replayed: dict[str, tuple[str, str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


async def record_failure(
    scripts: ScriptRegistry,
    keys: QueueKeys,
    job_id: str,
    token: str,
    outcome: Outcome,
    retention: Retention,
    lease: commands.Lease,
    dead_letter: str | None,
    metrics_window: int,
    parent: QueueKeys | None,
) -> commands.Taken:
    """Record a failed attempt: ``fail_job``, or ``dead_letter_job`` when the failure is final,
    not a cancellation, and a dead-letter queue is named."""
    target = _dead_letter_keys(dead_letter, keys, job_id)
    if target is not None and outcome.retry_delay < 0 and not outcome.cancelled:
        _, taken = await commands.dead_letter_job(
            scripts,
            keys,
            target,
            job_id,
            token,
            outcome.reason,
            outcome.stacktrace,
            DEFAULT_MAX_EVENTS,
            lease,
            metrics_window,
            parent,
        )
        return taken
    return await commands.fail_job(
        scripts,
        keys,
        job_id,
        token,
        outcome.reason,
        outcome.stacktrace,
        outcome.retry_delay,
        retention,
        lease,
        metrics_window,
        parent,
    )


def _dead_letter_keys(name: str | None, keys: QueueKeys, job_id: str) -> QueueKeys | None:
    if not name:
        return None
    try:
        target = QueueKeys(name, keys.prefix)
    except ValueError as exc:  # opts written by something other than Queue.add
        log.warning("job %s: not dead-lettered: %s", job_id, exc)
        return None
    return None if target == keys else target


async def replay(
    client: Redis,
    scripts: ScriptRegistry,
    keys: QueueKeys,
    ids: Sequence[str],
    max_events: int,
) -> ReplayResult:
    """Replay exactly ``ids`` of the dead-letter queue ``keys``, in batches."""
    result = ReplayResult()
    for start in range(0, len(ids), REPLAY_BATCH):
        await _replay_batch(client, scripts, keys, list(ids[start : start + REPLAY_BATCH]),
                            max_events, result)  # fmt: skip
    return result


async def replay_oldest(
    client: Redis, scripts: ScriptRegistry, keys: QueueKeys, count: int | None, max_events: int
) -> ReplayResult:
    """Replay the oldest ``count`` dead letters (all when None), in batches; ones that cannot
    go back stay, and are passed over."""
    result = ReplayResult()
    passed = 0  # dead letters left in place ahead of the ones still to read
    while count is None or len(result.replayed) < count:
        want = REPLAY_BATCH if count is None else min(REPLAY_BATCH, count - len(result.replayed))
        ids = [str(x) for x in await client.zrange(keys.failed, passed, passed + want - 1)]
        if not ids:
            break
        before = len(result.skipped)
        await _replay_batch(client, scripts, keys, ids, max_events, result)
        passed += len(result.skipped) - before
    return result


async def _replay_batch(
    client: Redis,
    scripts: ScriptRegistry,
    keys: QueueKeys,
    ids: list[str],
    max_events: int,
    result: ReplayResult,
) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for dl_id in ids:
            pipe.hmget(keys.job(dl_id), F.ORIGIN_QUEUE, F.ORIGIN_ID)
        origins = await pipe.execute()
    by_origin: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for dl_id, (queue, origin_id) in zip(ids, origins, strict=True):
        if not queue or not origin_id:
            result.skipped[dl_id] = _SKIPPED[0]
            continue
        by_origin[str(queue)].append((dl_id, str(origin_id)))
    for queue, entries in by_origin.items():
        try:
            origin = QueueKeys(queue, keys.prefix)
        except ValueError:
            for dl_id, _ in entries:
                result.skipped[dl_id] = f"origin queue {queue!r} is not a valid queue name"
            continue
        codes = await commands.replay_dead_letters(
            scripts, keys, origin, [dl_id for dl_id, _ in entries], max_events
        )
        for (dl_id, origin_id), code in zip(entries, codes, strict=True):
            if code == 1:
                result.replayed[dl_id] = (queue, origin_id)
            else:
                result.skipped[dl_id] = _SKIPPED.get(code, f"not replayed (code {code})")
