"""Job schedulers: jobs created every N ms or on a cron pattern, one job per tick.

A scheduler is a hash (timing, job template, iteration count, next run, last job) plus a
member of the queue's ``schedulers`` zset scored by its next run. Each tick's job is an
ordinary delayed job whose id is ``repeat-<scheduler id>-<tick ms>``; when a worker takes it,
``schedule_next`` creates the next tick's job (BullMQ's approach). Scripts create the jobs
atomically; croniter computes cron ticks here, from the server clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from . import commands
from .connection import TRANSIENT_ERRORS
from .errors import InvalidJobOptions
from .keys import QueueKeys
from .options import JobOptions
from .repeat import Timing, fingerprint
from .scripts import ScriptRegistry
from .serialization import dumps, loads

log = logging.getLogger("corral.schedulers")

TICK_JOB_PREFIX = "repeat-"
_SCHEDULER_ID = re.compile(r"^[^\x00-\x1f\x7f:{}\s][^\x00-\x1f\x7f:{}]{0,199}$")
_NOT_IN_TEMPLATE = ("job_id", "delay")
_ADVANCE_TRIES = 6


def validate_scheduler_id(scheduler_id: object) -> str:
    """Return ``scheduler_id`` if it can name a scheduler, else raise saying why."""
    if (
        not isinstance(scheduler_id, str)
        or not _SCHEDULER_ID.match(scheduler_id)
        or scheduler_id != scheduler_id.strip()
    ):
        raise InvalidJobOptions(
            f"scheduler_id={scheduler_id!r} is invalid: expected 1-200 characters without ':', "
            "braces, control characters or leading/trailing spaces"
        )
    return scheduler_id


def tick_job_prefix(scheduler_id: str) -> str:
    """What the ids of a scheduler's jobs start with; the tick's ms follow."""
    return f"{TICK_JOB_PREFIX}{scheduler_id}-"


def tick_job_id(scheduler_id: str, tick: int) -> str:
    """The id of the job a scheduler creates for the tick at ``tick`` ms."""
    return f"{tick_job_prefix(scheduler_id)}{tick}"


@dataclass(frozen=True, slots=True)
class JobScheduler:
    """A job scheduler as stored: its timing, the job it creates, and where it stands.

    ``next_run`` is the ms time of the next job (None once the limit or end date is reached);
    ``iterations`` counts the jobs it created; ``last_job_id`` is the newest of them.
    """

    id: str
    timing: Timing
    job_name: str
    job_data: Any
    job_opts: dict[str, Any]
    iterations: int
    next_run: int | None
    last_job_id: str | None
    created: int
    updated: int

    @property
    def every(self) -> int | None:
        """Ms between jobs, for an every-N scheduler."""
        return self.timing.every

    @property
    def pattern(self) -> str | None:
        """The cron pattern, for a cron scheduler."""
        return self.timing.pattern

    @property
    def tz(self) -> str | None:
        """The cron pattern's time zone (None = UTC)."""
        return self.timing.tz

    @property
    def ended(self) -> bool:
        """True once the scheduler creates no more jobs (limit or end date reached)."""
        return self.next_run is None

    @classmethod
    def from_hash(cls, scheduler_id: str, fields: dict[str, str]) -> JobScheduler:
        """Build from the scheduler hash."""
        opts = loads(fields.get("opts") or "{}")
        return cls(
            id=scheduler_id,
            timing=Timing.from_fields(fields),
            job_name=fields.get("name", ""),
            job_data=loads(fields.get("data") or "null"),
            job_opts=opts if isinstance(opts, dict) else {},
            iterations=int(fields.get("iterations") or 0),
            next_run=int(fields["next"]) if fields.get("next") else None,
            last_job_id=fields.get("last_job") or None,
            created=int(fields.get("created") or 0),
            updated=int(fields.get("updated") or 0),
        )


def _template(
    scheduler_id: str, job_name: object, job_data: Any, job_opts: object, max_payload: int
) -> commands.SchedulerTemplate:
    name = scheduler_id if job_name is None else job_name
    if not isinstance(name, str) or not name or len(name) > 256 or not name.isprintable():
        raise InvalidJobOptions(
            f"job_name={name!r} is invalid: expected 1-256 printable characters"
        )
    if job_opts is None:
        job_opts = {}
    if not isinstance(job_opts, dict):
        raise InvalidJobOptions(f"job_opts={job_opts!r} is invalid: expected a dict of job options")
    refused = sorted(set(job_opts) & {*_NOT_IN_TEMPLATE, "deduplication"})
    if refused:
        raise InvalidJobOptions(
            f"job_opts {refused} cannot be set for a scheduler's jobs: the scheduler chooses "
            "their ids and run times"
        )
    opts = JobOptions.build(**job_opts)
    return commands.SchedulerTemplate(
        name=name,
        data=dumps(job_data, what=f"job_data of scheduler {scheduler_id!r}", limit=max_payload),
        opts=dumps(opts.to_json(), what="job_opts"),
        priority=opts.priority,
        lifo=opts.lifo,
        attempts=opts.attempts,
    )


class SchedulerStore:
    """The job schedulers of one queue: upsert, read, remove, and move on after a take."""

    def __init__(
        self,
        client: Redis,
        scripts: ScriptRegistry,
        keys: QueueKeys,
        *,
        max_events: int = 10_000,
        max_payload: int = 512 * 1024,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.keys = keys
        self.max_events = max_events
        self.max_payload = max_payload

    async def _server_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def upsert(
        self,
        scheduler_id: str,
        *,
        every: int | None = None,
        pattern: str | None = None,
        tz: str | None = None,
        start_date: Any = None,
        end_date: Any = None,
        limit: int | None = None,
        job_name: str | None = None,
        job_data: Any = None,
        job_opts: dict[str, Any] | None = None,
    ) -> JobScheduler:
        """Create or change a scheduler; see ``Queue.upsert_job_scheduler``."""
        validate_scheduler_id(scheduler_id)
        timing = Timing.build(
            every=every, pattern=pattern, tz=tz, start_date=start_date, end_date=end_date,
            limit=limit,
        )  # fmt: skip
        template = _template(scheduler_id, job_name, job_data, job_opts, self.max_payload)
        fields = timing.to_fields()
        whole = fingerprint([fields, template.name, template.data, template.opts])
        now = await self._server_ms()
        tick = timing.first_tick(now)
        for _ in range(10):
            done = await commands.upsert_job_scheduler(
                self.scripts,
                self.keys,
                scheduler_id,
                tick_prefix=tick_job_prefix(scheduler_id),
                first_tick=tick,
                fingerprint=whole,
                timing_fingerprint=timing.fingerprint(),
                limit=timing.limit or 0,
                end_date=timing.end_date or 0,
                max_events=self.max_events,
                template=template,
                fields=fields,
            )
            if done.status != "collision":
                break
            assert done.tick is not None
            tick = timing.next_tick(done.tick, done.tick)
            if timing.end_date is not None and tick > timing.end_date:
                tick = -1
        found = await self.get(scheduler_id)
        if found is None:  # removed by someone else right after the upsert
            raise InvalidJobOptions(f"scheduler {scheduler_id!r} was removed while it was upserted")
        return found

    async def get(self, scheduler_id: str) -> JobScheduler | None:
        """One scheduler, or None."""
        fields: dict[str, str] = dict(await self.client.hgetall(self.keys.scheduler(scheduler_id)))  # type: ignore[arg-type]
        return JobScheduler.from_hash(scheduler_id, fields) if fields else None

    async def list(self, start: int = 0, end: int = 49) -> list[JobScheduler]:
        """One page of schedulers, soonest next run first (ended ones last)."""
        if start < 0 or end < start - 1:
            raise InvalidJobOptions(f"start={start}, end={end}: expected 0 <= start <= end + 1")
        ids = [str(x) for x in await self.client.zrange(self.keys.schedulers, start, end)]
        async with self.client.pipeline(transaction=False) as pipe:
            for scheduler_id in ids:
                pipe.hgetall(self.keys.scheduler(scheduler_id))
            hashes = await pipe.execute()
        return [
            JobScheduler.from_hash(scheduler_id, fields)
            for scheduler_id, fields in zip(ids, hashes, strict=True)
            if fields
        ]

    async def remove(self, scheduler_id: str) -> bool:
        """Delete a scheduler and its waiting job; False if there was none."""
        existed, _ = await commands.remove_job_scheduler(self.scripts, self.keys, scheduler_id)
        return existed

    async def schedule_next(self, scheduler_id: str, job_id: str) -> commands.Scheduled | None:
        """Create the next tick's job after a worker took ``job_id``; None when there was
        nothing to do (not the scheduler's current job, or it ended). Never raises: a failure
        is logged, and the schedule resumes when the job is taken again or on the next upsert."""
        for attempt in range(_ADVANCE_TRIES):
            try:
                return await self._schedule_next(scheduler_id, job_id)
            except TRANSIENT_ERRORS as exc:
                if attempt == _ADVANCE_TRIES - 1:
                    log.error(
                        "scheduler %s of queue %s: could not schedule the job after %s (%s); it "
                        "resumes when that job is taken again or the scheduler is upserted",
                        scheduler_id, self.keys.queue, job_id, exc,
                    )  # fmt: skip
                    return None
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            except Exception:
                log.exception(
                    "scheduler %s: scheduling the job after %s failed", scheduler_id, job_id
                )
                return None
        return None

    async def _schedule_next(self, scheduler_id: str, job_id: str) -> commands.Scheduled | None:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(self.keys.scheduler(scheduler_id))
            (seconds, micros), fields = await pipe.execute()
        if not fields or fields.get("last_job") != job_id or not fields.get("next"):
            return None
        now = int(seconds) * 1000 + int(micros) // 1000
        timing = Timing.from_fields(fields)
        nxt = timing.next_tick(int(fields["next"]), now)
        return await commands.schedule_next_job(
            self.scripts,
            self.keys,
            scheduler_id,
            tick_prefix=tick_job_prefix(scheduler_id),
            taken_job_id=job_id,
            timing_fingerprint=timing.fingerprint(),
            next_tick=nxt,
        )
