"""Queue: add jobs, read them, and manage them (retry, discard, promote, pause, clean...).

The producer API and the admin API the dashboard uses; every change runs one Lua script.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import commands
from .breaker import Breaker, BreakerState, read_breaker
from .cancellation import CancelResult, validate_who
from .connection import NOT_PRIMARY_ERRORS, Connection, make_client
from .dead_letters import ReplayResult, replay, replay_oldest
from .deduplication import Deduplication
from .durability import DEFAULT_DURABLE_TIMEOUT_MS, confirm, validate_durable, wait_for_fsync
from .errors import InvalidJobOptions, JobNotFound, JobStateError, UnsafeServerConfig
from .flow_model import Dependencies, JobRef
from .flows import read_dependencies, remove_flow_job
from .job import ALL_STATES, LIST_STATES, NEWEST_FIRST_STATES, CorruptJob, Job, JobState
from .job_types import JobTypes
from .keys import DEFAULT_PREFIX, QueueKeys
from .metrics import MINUTE_MS, Metrics, read_metrics
from .multiplex import MultiplexedConnection, close_quietly
from .options import MAX_PRIORITY, JobOptions, validate_dead_letter
from .rate_limit import manual_limit_ms, rate_limit_ttl
from .schedulers import JobScheduler, SchedulerStore
from .scripts import ScriptBatch, ScriptRegistry
from .serialization import DEFAULT_MAX_PAYLOAD, dumps
from .server_watch import ServerWatch
from .worker_info import WorkerInfo, read_workers

BULK_PIECE = 200
"""Adds per piece of a big ``add_bulk`` over the pipelined connection."""

EXISTING_READ = 100
"""Jobs per atomic read of the existing jobs that duplicate adds return."""

DEMOTED_RETRIES = 3
"""Times a durable add that a replica refused whole (after a failover) is sent again."""

log = logging.getLogger("corral.queue")

_PLAIN = (str, int, float, bool, type(None))
"""Types of option values whose checked form ``Queue`` remembers."""

DEFAULT_MAX_EVENTS = 10_000
BATCH = 100  # jobs per script call in bulk operations: each call takes a few ms at most

_FINISHED = ("failed", "completed")

BulkItem = tuple[str, Any] | tuple[str, Any, Mapping[str, Any]]
_Existing = Mapping[str, Job]


def _state(value: str | JobState) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        raise InvalidJobOptions(
            f"state={value!r} is invalid: expected one of {[s.value for s in ALL_STATES]}"
        ) from None


def _name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 256 or not name.isprintable():
        raise InvalidJobOptions(
            f"job name {name!r} is invalid: expected 1-256 printable characters"
        )
    return name


class Queue:
    """A named queue on a Redis server: ``Queue("emails", connection="redis://...")``."""

    def __init__(
        self,
        name: str,
        connection: Connection = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        allow_unsafe_eviction: bool = False,
        types: JobTypes | None = None,
        durable: bool = False,
        durable_timeout_ms: int = DEFAULT_DURABLE_TIMEOUT_MS,
    ) -> None:
        self.keys = QueueKeys(name, prefix)
        # every add waits for the server's AOF fsync (WAITAOF) unless add(durable=False)
        self.durable, self.durable_timeout_ms = validate_durable(durable, durable_timeout_ms)
        if types is not None and not isinstance(types, JobTypes):
            raise InvalidJobOptions(f"types={types!r} is invalid: expected a JobTypes")
        self.types = types if types is not None else JobTypes()
        if not isinstance(max_events, int) or max_events < 100:
            raise InvalidJobOptions(f"max_events={max_events!r} is invalid: expected an int >= 100")
        if not isinstance(max_payload, int) or max_payload < 1:
            raise InvalidJobOptions(f"max_payload={max_payload!r} is invalid: expected an int >= 1")
        self.max_events = max_events
        self.max_payload = max_payload
        self._allow_unsafe = allow_unsafe_eviction
        # re-checked after every new connection: an unsafe policy raises, a reset is logged
        self._watch = ServerWatch(
            self.keys,
            f"queue {name!r}",
            allow_unsafe_eviction=allow_unsafe_eviction,
            log_refusals=False,
        )
        self.client, self._owns_client = make_client(
            connection, redis_connect_func=self._watch.on_connect
        )
        self._watch.attach(self.client)
        self.scripts = ScriptRegistry(self.client)
        # adds go over one pipelined connection (many concurrent adds share its writes)
        self._wire = MultiplexedConnection.for_client(self.client, on_open=self._watch.connected)
        self._adding = ScriptRegistry(self.client, self._wire) if self._wire else self.scripts
        self._checked = False
        self._known_options: dict[tuple[Any, ...], tuple[JobOptions, str]] = {}
        self._schedulers = SchedulerStore(
            self.client, self.scripts, self.keys, max_events=max_events, max_payload=max_payload
        )

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.keys.queue

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection if this queue opened it."""
        await close_quietly(self._wire)
        if self._owns_client:
            await self.client.aclose()

    async def _check(self) -> None:
        if self._wire is not None:
            # open the adds' connection first: a new one marks the watch, and the check below
            # then looks at the server before the add (did it come back empty?)
            with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
                await self._wire.ensure_connected()
        if not self._checked:
            await self._watch.start()
            self._checked = True
        elif self._watch.stale or self._watch.refusal is not None:
            await self._watch.recheck()  # a refused server is asked again until it is safe
            if self._watch.refusal is not None:
                raise UnsafeServerConfig(self._watch.refusal)
        else:
            await self._watch.remember_queue()  # one HGET, and only until the queue exists

    async def _check_after_write(self) -> None:
        """A write that had to reconnect (its connection died unnoticed, as in a server restart)
        checks the server at once, so the first add after a reset already reports it. An unsafe
        server found here is refused from the next call on."""
        if self._watch.stale:
            await self._watch.recheck()

    # ---- adding ----------------------------------------------------------------------------

    def register(self, name: str, schema: type) -> type:
        """Check the data of jobs named ``name`` against ``schema`` (a dataclass or a pydantic
        model) from now on; shorthand for ``queue.types.register``."""
        return self.types.register(name, schema)

    def _options(self, options: Mapping[str, Any]) -> tuple[JobOptions, str]:
        """Checked options and their JSON; the same options (all of plain values, as most
        jobs of a bulk add have) are checked once."""
        key: tuple[Any, ...] | None = None
        # plain values only, keyed with their type (True == 1, but they are other options);
        # a custom id makes every job's options its own
        if "job_id" not in options and all(type(v) in _PLAIN for v in options.values()):
            key = tuple(sorted((name, type(v).__name__, v) for name, v in options.items()))
        if key is not None and (known := self._known_options.get(key)) is not None:
            return known
        opts = JobOptions.build(**options)
        if opts.dead_letter is not None:
            validate_dead_letter(opts.dead_letter, self.name)
        checked = opts, dumps(opts.to_json(), what="opts")
        if key is not None:
            if len(self._known_options) >= 256:
                self._known_options.clear()
            self._known_options[key] = checked
        return checked

    def _prepare(self, name: str, data: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        opts, opts_json = self._options(options)
        data = self.types.dump(_name(name), data)
        fields: dict[str, Any] = {
            "job_id": opts.job_id or "",
            "name": _name(name),
            "data": dumps(data, what=f"data of job {name!r}", limit=self.max_payload),
            "opts": opts_json,
            "delay": opts.delay,
            "priority": opts.priority,
            "lifo": opts.lifo,
            "attempts": opts.attempts,
            "max_events": self.max_events,
        }
        if opts.deduplication is not None:
            fields["deduplication"] = opts.deduplication
        return fields

    async def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Add one job; with a ``job_id`` that exists already, return the existing job instead.

        Options: attempts, backoff, delay (ms), priority (1 = first), lifo, job_id,
        remove_on_complete, remove_on_fail (True, False, a count, or {"count", "age" (s)}),
        timeout_ms (per attempt; 0 = none), dead_letter (a queue for it if it fails for good).
        One round trip for a new job. ``durable=True`` (default: the queue's ``durable``) returns
        only once the server has fsynced the add to its AOF, else raises
        ``DurabilityNotConfirmed`` (the job is added all the same).
        """
        durable = options.pop("durable", None)  # not a job option: how the add is confirmed
        prepared = self._prepare(name, data, options)
        if self._durable(durable):
            return (await self._add_durably([prepared]))[0]
        await self._check()
        if "deduplication" in prepared:
            reply = await commands.add_deduplicated_job(self._adding, self.keys, **prepared)
        else:
            reply = await commands.add_job(self._adding, self.keys, **prepared)
        await self._check_after_write()
        return (await self._all_added([reply], [prepared]))[0]

    async def add_bulk(self, jobs: Iterable[BulkItem], *, durable: bool | None = None) -> list[Job]:
        """Add many jobs in one round trip: items are (name, data) or (name, data, options).
        ``durable`` as for ``add``: one WAITAOF confirms the whole batch."""
        prepared: list[dict[str, Any]] = []
        for index, item in enumerate(jobs):
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise InvalidJobOptions(
                    f"add_bulk item {index} is {item!r}: expected (name, data) or "
                    "(name, data, options)"
                )
            options = item[2] if len(item) == 3 else {}  # type: ignore[misc, unused-ignore]
            if not isinstance(options, Mapping):
                raise InvalidJobOptions(f"add_bulk item {index}: options must be a dict")
            prepared.append(self._prepare(item[0], item[1], options))
        if not prepared:
            return []
        if self._durable(durable):
            return await self._add_durably(prepared)
        await self._check()
        if self._adding.batch() is None or len(prepared) <= BULK_PIECE:
            replies = await self._add_all(prepared)
            await self._check_after_write()
            return await self._all_added(replies, prepared)
        return await self._add_in_pieces(prepared)

    async def _add_in_pieces(self, prepared: list[dict[str, Any]]) -> list[Job]:
        """A big batch over the pipelined connection, in pieces that overlap: the server runs
        one piece while the next is packed and the one before is turned into jobs. Every piece
        is sent whatever happens to the others (as in one pipeline); the first error is raised
        once all have answered."""
        pieces = [prepared[i : i + BULK_PIECE] for i in range(0, len(prepared), BULK_PIECE)]
        sent: list[asyncio.Task[list[Any]]] = []
        for piece in pieces:
            sent.append(asyncio.ensure_future(self._add_all(piece)))
            await asyncio.sleep(0)  # let it write before the next piece is packed
        jobs: list[Job] = []
        error: BaseException | None = None
        for piece, replies in zip(pieces, sent, strict=True):
            try:
                answered = await replies
            except Exception as exc:  # the other pieces are still awaited
                error = error or exc
                continue
            if error is None:  # built while the server runs the pieces after it
                jobs += await self._all_added(answered, piece)
        await self._check_after_write()
        if error is not None:
            raise error
        return jobs

    def _durable(self, durable: object) -> bool:
        if durable is None:
            return self.durable
        return validate_durable(durable, self.durable_timeout_ms)[0]

    async def _add_durably(self, prepared: list[dict[str, Any]]) -> list[Job]:
        """The adds and WAITAOF in one pipeline, so on one connection (WAITAOF confirms the
        writes of its own connection only)."""
        await self._check()
        for attempt in range(1 + DEMOTED_RETRIES):
            async with self.client.pipeline(transaction=False) as pipe:
                for fields in prepared:
                    await self._add_one(pipe, fields)
                wait_for_fsync(pipe, self.durable_timeout_ms)
                replies = await pipe.execute(raise_on_error=False)
            refused = [isinstance(reply, NOT_PRIMARY_ERRORS) for reply in replies[:-1]]
            if not any(refused):
                break
            # the server is a replica now (a failover): errors left in the replies do not make
            # redis-py drop the connection, so drop the idle ones here; the next connection
            # goes to the configured address. When every add was refused none ran: try again.
            await self.client.connection_pool.disconnect(inuse_connections=False)
            if not all(refused) or attempt == DEMOTED_RETRIES:
                break
            await asyncio.sleep(0.1 * 2**attempt)
        for reply in replies[:-1]:
            if isinstance(reply, Exception):
                raise reply
        added = await self._all_added(replies[:-1], prepared)
        confirm(replies[-1], self.durable_timeout_ms, added)
        return added

    async def _all_added(self, replies: list[Any], prepared: list[dict[str, Any]]) -> list[Job]:
        """The jobs of these adds, in order: a new job is built from what was sent (no read
        back); a custom id (or deduplication id) that was taken already gives the existing
        job, and all of those are read together (``read_existing_jobs``)."""
        added = [
            commands.parse_deduplicated_add(reply)
            if "deduplication" in fields
            else commands.parse_add(reply)
            for reply, fields in zip(replies, prepared, strict=True)
        ]
        taken = [a.job_id for a in added if a.deduplicated or a.state is None]
        existing = await read_existing_jobs(self.client, self.keys, taken) if taken else {}
        return [self._added(a, fields, existing) for a, fields in zip(added, prepared, strict=True)]

    async def _add_all(self, prepared: list[dict[str, Any]]) -> list[Any]:
        """Send every add at once: one add_jobs call for them all, or (when some are
        deduplicated) one call each over the pipelined connection, else in a pipeline."""
        if len(prepared) > 1 and not any("deduplication" in fields for fields in prepared):
            return list(await commands.add_jobs(self._adding, self.keys, prepared, self.max_events))
        batch = self._adding.batch()
        if batch is not None:
            for fields in prepared:
                await self._add_one(batch, fields)
            return await batch.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for fields in prepared:
                await self._add_one(pipe, fields)
            return list(await pipe.execute())

    async def _add_one(self, pipe: Pipeline | ScriptBatch, fields: dict[str, Any]) -> None:
        if "deduplication" in fields:
            await commands.add_deduplicated_job(self._adding, self.keys, pipeline=pipe, **fields)
        else:
            await commands.add_job(self._adding, self.keys, pipeline=pipe, **fields)

    def _added(self, added: commands.Added, fields: dict[str, Any], existing: _Existing) -> Job:
        """The job of one add: built from what was sent, or the existing job read back."""
        if added.deduplicated:
            return self._holder(added.job_id, fields, existing.get(added.job_id))
        if added.state is None or added.timestamp is None:
            job = existing.get(added.job_id)
            if job is None:  # removed between the add and the read
                raise JobNotFound(f"job {added.job_id!r} vanished right after it was added")
            return job
        return Job(
            id=added.job_id,
            queue=self.name,
            name=fields["name"],
            data=json.loads(fields["data"]),  # as a worker will see it (tuples become lists)
            opts=json.loads(fields["opts"]),
            timestamp=added.timestamp,
            delay=fields["delay"],
            priority=fields["priority"],
            attempts=fields["attempts"],
            state=JobState(added.state),
        )

    def _holder(self, job_id: str, fields: dict[str, Any], holder: Job | None) -> Job:
        """The job that holds a deduplication id, flagged ``deduplicated``. A throttle ttl can
        outlive its job: then only its id is known (state None, data None, this add's name)."""
        if holder is None:
            return Job(
                id=job_id,
                queue=self.name,
                name=fields["name"],
                data=None,
                opts={},
                timestamp=0,
                deduplicated=True,
            )
        return dataclasses.replace(holder, deduplicated=True)

    async def get_deduplication_job_id(self, dedup_id: str) -> str | None:
        """The id of the job that holds deduplication id ``dedup_id``, or None if it is free."""
        holder = await self.client.get(self.keys.dedup(Deduplication(dedup_id).id))
        return None if holder is None else str(holder)

    async def remove_deduplication_key(self, dedup_id: str, job_id: str | None = None) -> bool:
        """Free ``dedup_id`` now (only while ``job_id`` holds it, if given), so the next add with
        it creates a job; False if it was not held."""
        await self._check()
        return await commands.remove_deduplication_key(
            self.scripts, self.keys, Deduplication(dedup_id).id, job_id
        )

    # ---- reading ---------------------------------------------------------------------------

    async def get_counts(self, *states: str | JobState) -> dict[str, int]:
        """Jobs per state, read in one round trip (all states when none are named)."""
        wanted = [_state(s) for s in states] or list(ALL_STATES)
        async with self.client.pipeline(transaction=False) as pipe:
            for state in wanted:
                key = self.state_key(state)
                if state in (JobState.WAIT, JobState.PAUSED):
                    pipe.llen(key)
                else:
                    pipe.zcard(key)
            counts = await pipe.execute()
        return {state.value: int(n) for state, n in zip(wanted, counts, strict=True)}

    async def get_totals(self) -> tuple[int, int]:
        """Monotonic (completed, failed) totals since the queue was created."""
        completed, failed = await self.client.hmget(self.keys.counters, "completed", "failed")
        return int(completed or 0), int(failed or 0)

    def state_key(self, state: str | JobState) -> str:
        """The Redis key that holds the jobs of ``state``."""
        return self.keys.of_state(_state(state).value)

    async def get_job_ids(self, state: str | JobState, start: int = 0, end: int = 49) -> list[str]:
        """Ids of one page of ``state``: newest first for completed/failed and wait, else in
        the order they will run (bounded range reads only)."""
        state = _state(state)
        if start < 0 or end < start - 1:
            raise InvalidJobOptions(f"start={start}, end={end}: expected 0 <= start <= end + 1")
        key = self.state_key(state)
        if state in (JobState.WAIT, JobState.PAUSED):
            return [str(x) for x in await self.client.lrange(key, start, end)]
        if state in NEWEST_FIRST_STATES:
            return [str(x) for x in await self.client.zrevrange(key, start, end)]
        return [str(x) for x in await self.client.zrange(key, start, end)]

    async def get_job_entries(
        self, state: str | JobState, start: int = 0, end: int = 49
    ) -> list[Job | CorruptJob]:
        """One page of ``state``; a hash that cannot be read comes back as ``CorruptJob``."""
        state = _state(state)
        ids = await self.get_job_ids(state, start, end)
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            hashes = await pipe.execute()
        out: list[Job | CorruptJob] = []
        for job_id, fields in zip(ids, hashes, strict=True):
            try:
                if not fields:
                    raise CorruptJob(job_id, "the job hash is missing", {})
                out.append(Job.from_hash(self.name, job_id, fields, state))
            except CorruptJob as exc:
                out.append(exc)
        return out

    async def get_jobs(self, state: str | JobState, start: int = 0, end: int = 49) -> list[Job]:
        """One page of ``state`` as jobs (unreadable hashes are skipped and logged)."""
        jobs: list[Job] = []
        for entry in await self.get_job_entries(state, start, end):
            if isinstance(entry, CorruptJob):
                log.warning("%s", entry)
            else:
                jobs.append(entry)
        return jobs

    async def get_job_state(self, job_id: str) -> JobState | None:
        """The state ``job_id`` is in, or None if there is no such job."""
        return await read_job_state(self.client, self.keys, job_id)

    async def get_job(self, job_id: str) -> Job | None:
        """One job with its state, or None. Raises ``CorruptJob`` for an unreadable hash."""
        fields: dict[str, str] = dict(await self.client.hgetall(self.keys.job(job_id)))  # type: ignore[arg-type]
        if not fields:
            return None
        return Job.from_hash(self.name, job_id, fields, await self.get_job_state(job_id))

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        """Log lines a processor wrote for ``job_id`` (bounded: at most 1000 are kept)."""
        return [str(x) for x in await self.client.lrange(self.keys.logs(job_id), start, end)]

    async def get_dependencies(self, job_id: str) -> Dependencies:
        """A parent's children: unprocessed, processed (with values), ignored and failed."""
        return await read_dependencies(self.client, self.keys, job_id)

    async def get_children_values(self, job_id: str) -> dict[JobRef, Any]:
        """The return values of a parent's completed children, by child."""
        return (await self.get_dependencies(job_id)).processed

    async def is_paused(self) -> bool:
        """True while the queue is paused."""
        return bool(await self.client.hexists(self.keys.meta, "paused"))

    async def get_workers(self) -> list[WorkerInfo]:
        """The live workers of this queue (host, pid, concurrency, jobs in flight, started,
        last beat), oldest first; a worker that died drops out when its heartbeat expires."""
        return await read_workers(self.client, self.keys)

    async def get_metrics(
        self, kind: str, start: int | None = None, end: int | None = None
    ) -> Metrics:
        """Per-minute ``kind`` (completed|failed) counts and processing/wait times, one point
        per minute from ``start`` to ``end`` (ms, server clock; default: the last 60 minutes,
        this one included), oldest first. At most 7 days per call."""
        if end is None:
            end = await self._server_ms()
        if start is None:
            start = max(end - 59 * MINUTE_MS, 0)
        return await read_metrics(self.client, self.keys, kind, start, end)

    async def get_rate_limit_ttl(self, max_jobs: int | None = None) -> int:
        """Ms until workers may take jobs again because of the rate limiter, 0 if they may now:
        a manual limit, or (given ``max_jobs``, the workers' limit) a full window."""
        return await rate_limit_ttl(self.client, self.keys, max_jobs)

    # ---- managing --------------------------------------------------------------------------

    async def rate_limit(self, ms: int) -> None:
        """Stop every worker of the queue from taking jobs for ``ms`` ms (jobs stay waiting)."""
        await self._check()
        await commands.rate_limit_queue(self.scripts, self.keys, manual_limit_ms(ms))

    async def pause(self) -> bool:
        """Stop workers taking jobs (active ones finish). False if it was paused already."""
        await self._check()
        return await commands.pause_queue(self.scripts, self.keys)

    async def resume(self) -> bool:
        """Let workers take jobs again. False if it was not paused. A tripped circuit breaker
        is not closed by this: use ``reset_breaker()``."""
        await self._check()
        return await commands.resume_queue(self.scripts, self.keys)

    # ---- circuit breaker (protocol §25) -------------------------------------------------------

    async def set_breaker(self, settings: Breaker) -> bool:
        """Give the queue a circuit breaker (or new settings for it), shared by every worker of
        the queue. True if it had none before; a breaker that holds the queue keeps holding it."""
        if not isinstance(settings, Breaker):
            raise InvalidJobOptions(f"settings={settings!r}: expected a Breaker")
        await self._check()
        return await commands.set_breaker(
            self.scripts, self.keys, settings.to_json(), settings.window_ms
        )

    async def get_breaker(self) -> BreakerState | None:
        """The breaker's settings and state (closed, open, half-open), or None if it has none."""
        return await read_breaker(self.client, self.keys)

    async def reset_breaker(self) -> bool:
        """Close the breaker now (operator override); True if it was open or half-open.
        ``resume()`` does not: it lifts an operator's pause only."""
        await self._check()
        return await commands.reset_breaker(self.scripts, self.keys)

    async def remove_breaker(self) -> bool:
        """Take the breaker off the queue, closing it first; True if it had one."""
        await self._check()
        return await commands.remove_breaker(self.scripts, self.keys)

    async def retry_job(self, job_id: str, state: str = "failed") -> None:
        """Run a failed (or completed) job again with fresh attempts.

        Raises ``JobStateError`` naming the job's current state if it is no longer in ``state``.
        """
        if state not in _FINISHED:
            raise InvalidJobOptions(f"state={state!r}: only failed or completed jobs are retried")
        await self._check()
        (retried,) = await commands.retry_job(self.scripts, self.keys, state, [job_id])
        if not retried:
            await self._raise_state(job_id, f"not retried: job {job_id!r} is", state)

    async def retry_job_ids(self, job_ids: Sequence[str], state: str = "failed") -> dict[str, bool]:
        """Retry exactly these jobs (those still in ``state``), in batches; id -> retried."""
        if state not in _FINISHED:
            raise InvalidJobOptions(f"state={state!r}: only failed or completed jobs are retried")
        await self._check()
        out: dict[str, bool] = {}
        for i in range(0, len(job_ids), BATCH):
            chunk = list(job_ids[i : i + BATCH])
            done = await commands.retry_job(self.scripts, self.keys, state, chunk)
            out.update(zip(chunk, done, strict=True))
        return out

    async def retry_jobs(self, state: str = "failed", count: int | None = None) -> int:
        """Retry every job of ``state`` that had finished when this call began, in batches."""
        if state not in _FINISHED:
            raise InvalidJobOptions(f"state={state!r}: only failed or completed jobs are retried")
        await self._check()
        cutoff = await self._server_ms()
        total = 0
        while count is None or total < count:
            batch = BATCH if count is None else min(BATCH, count - total)
            n = await commands.retry_jobs(self.scripts, self.keys, state, cutoff, batch)
            total += n
            if n < batch:
                break
        return total

    async def cancel_job(self, job_id: str, by: str = "api") -> CancelResult:
        """Cancel a job; it ends in failed with reason "cancelled by <by>" and is not retried.

        A job that waits (wait, paused, prioritized, delayed) is failed at once. A running job
        is stopped by its worker, normally within milliseconds: an ``async def`` processor gets
        ``asyncio.CancelledError`` at its next await, a ``def`` processor sees
        ``job.cancelled`` (its thread is abandoned). Raises ``JobStateError`` naming the state
        of a job that has finished, ``JobNotFound`` for no such job.
        """
        by = validate_who(by)
        await self._check()
        try:
            reply = await commands.cancel_job(self.scripts, self.keys, job_id, by)
        except JobStateError:
            await self._raise_state(
                job_id, f"not cancelled: job {job_id!r} is", "waiting, delayed or active"
            )
            raise
        return CancelResult(job_id, JobState(reply.state), reply.failed_now)

    async def replay_dead_letters(
        self, ids: Sequence[str] | None = None, *, count: int | None = None
    ) -> ReplayResult:
        """On a dead-letter queue: put dead letters back on the queues they came from, under
        their original ids, ready to run with fresh attempts (their logs go with them).

        Replays exactly ``ids``, or else the oldest ``count`` (all when both are None), in
        batches of 100. A dead letter whose origin queue has a job with its id again stays
        here; ``ReplayResult.skipped`` says which and why.
        """
        if ids is not None and count is not None:
            raise InvalidJobOptions("replay_dead_letters: give ids or count, not both")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise InvalidJobOptions(f"count={count!r} is invalid: expected an int >= 1")
        if isinstance(ids, str):
            raise InvalidJobOptions(f"ids={ids!r} is invalid: expected a list of ids")
        await self._check()
        if ids is not None:
            return await replay(self.client, self.scripts, self.keys, list(ids), self.max_events)
        return await replay_oldest(self.client, self.scripts, self.keys, count, self.max_events)

    async def remove_job(self, job_id: str) -> str:
        """Discard a job and its logs; returns the state it was in. Refuses a job a worker holds.

        A job of a flow goes with all its descendants, and leaves its parent consistent (a
        parent whose last pending child is removed moves on).
        """
        await self._check()
        state = await commands.remove_job(self.scripts, self.keys, job_id)
        if state is None:
            state = await remove_flow_job(self.client, self.scripts, self.keys, job_id)
        return state

    async def change_priority(self, job_id: str, priority: int) -> None:
        """Give a job a new priority (0 = none, 1 = runs first, at most 2^21). A ready job
        moves at once; a job in another state runs with it when it is next ready."""
        if (
            not isinstance(priority, int)
            or isinstance(priority, bool)
            or not 0 <= priority <= MAX_PRIORITY
        ):
            raise InvalidJobOptions(
                f"priority={priority!r} is invalid: expected an int from 0 to {MAX_PRIORITY}"
            )
        await self._check()
        await commands.change_priority(self.scripts, self.keys, job_id, priority)

    async def update_data(self, job_id: str, data: Any) -> None:
        """Replace a job's data, whatever its state (a running processor sees it only if it
        reads the job again)."""
        value = dumps(data, what=f"data of job {job_id!r}", limit=self.max_payload)
        await self._check()
        await commands.update_data(self.scripts, self.keys, job_id, value)

    async def promote_job(self, job_id: str) -> None:
        """Make a delayed job ready now; ``JobStateError`` if it is not delayed any more."""
        if job_id == "*":  # the script reads a lone "*" as "promote all"; no job has that id
            raise JobNotFound(f"job {job_id!r} does not exist in queue {self.name!r}")
        await self._check()
        (done,) = await commands.promote_job(self.scripts, self.keys, [job_id])
        if not done:
            await self._raise_state(job_id, f"not promoted: job {job_id!r} is", "delayed")

    async def promote_jobs(self, count: int | None = None) -> int:
        """Promote delayed jobs (earliest first), in batches; returns how many."""
        await self._check()
        total = 0
        while count is None or total < count:
            batch = BATCH if count is None else min(BATCH, count - total)
            n = await commands.promote_jobs(self.scripts, self.keys, batch)
            total += n
            if n < batch:
                break
        return total

    async def clean(self, grace_ms: int, limit: int, state: str = "completed") -> list[str]:
        """Remove up to ``limit`` completed or failed jobs that finished over ``grace_ms`` ago."""
        if state not in _FINISHED:
            raise InvalidJobOptions(f"state={state!r}: clean takes completed or failed")
        if not isinstance(grace_ms, int) or grace_ms < 0:
            raise InvalidJobOptions(f"grace_ms={grace_ms!r}: expected an int >= 0")
        if not isinstance(limit, int) or limit < 1:
            raise InvalidJobOptions(f"limit={limit!r}: expected an int >= 1")
        await self._check()
        removed: list[str] = []
        while len(removed) < limit:
            batch = min(BATCH, limit - len(removed))
            ids = await commands.clean_jobs(self.scripts, self.keys, state, grace_ms, batch)
            removed += ids
            if len(ids) < batch:
                break
        return removed

    async def drain(self, delayed: bool = False) -> int:
        """Remove every job waiting to run (and delayed ones if asked); returns how many."""
        await self._check()
        total = 0
        while n := await commands.drain_queue(self.scripts, self.keys, delayed, BATCH):
            total += n
        return total

    async def obliterate(self, force: bool = False) -> None:
        """Delete the whole queue. Refused while workers hold jobs unless ``force``."""
        await self._check()
        while True:
            n = await commands.obliterate_queue(self.scripts, self.keys, force, BATCH)
            if n == -8:
                raise JobStateError(
                    f"queue {self.name!r} has active jobs held by workers; close them first "
                    "or pass force=True",
                    state="active",
                )
            if n == 0:
                break
        async for key in self.client.scan_iter(match=self.keys.base + ":*", count=1000):
            await self.client.delete(key)

    # ---- job schedulers --------------------------------------------------------------------

    async def upsert_job_scheduler(
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
        """Create or change a job scheduler: a job every ``every`` ms, or on cron ``pattern``
        (5 fields, or 6 with seconds first) in time zone ``tz`` (default UTC).

        ``start_date``/``end_date`` (ms or aware datetimes) bound the ticks and ``limit`` caps
        the number of jobs. Each job is named ``job_name`` (default: the scheduler id) with
        ``job_data`` and ``job_opts`` (attempts, backoff, priority, retention...). Upserting
        the same definition again changes nothing; a new one replaces the waiting job.
        Exactly one job is created per tick, whatever the number of producers and workers.
        """
        job_type = job_name or scheduler_id
        if isinstance(job_type, str) and job_type in self.types:
            job_data = self.types.dump(job_type, job_data)
        await self._check()
        return await self._schedulers.upsert(
            scheduler_id,
            every=every,
            pattern=pattern,
            tz=tz,
            start_date=start_date,
            end_date=end_date,
            limit=limit,
            job_name=job_name,
            job_data=job_data,
            job_opts=job_opts,
        )

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        """Delete a scheduler and the job it has waiting; False if there was no such scheduler.
        A job of it that is already running finishes normally."""
        await self._check()
        return await self._schedulers.remove(scheduler_id)

    async def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """One scheduler with its next run, iteration count and last job, or None."""
        return await self._schedulers.get(scheduler_id)

    async def get_job_schedulers(self, start: int = 0, end: int = 49) -> list[JobScheduler]:
        """A page of schedulers, soonest next run first (ended ones last)."""
        return await self._schedulers.list(start, end)

    async def _server_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _raise_state(self, job_id: str, prefix: str, wanted: str) -> None:
        state = await self.get_job_state(job_id)
        if state is None and not await self.client.exists(self.keys.job(job_id)):
            raise JobNotFound(f"job {job_id!r} does not exist in queue {self.name!r}")
        now = state.value if state else "in no state"
        raise JobStateError(f"{prefix} now {now} (expected {wanted})", state=now)


async def read_existing_jobs(
    client: Redis, keys: QueueKeys, job_ids: Sequence[str]
) -> dict[str, Job]:
    """Jobs that exist already, each with the state it is in, by id (an id with no job hash is
    left out); what a duplicate add returns. Raises ``CorruptJob`` for an unreadable hash.

    O(log n) per job in the size of the queue, whatever the state: each job's hash and its
    score in every sorted-set state, and the queue's pause flag, are read in one MULTI per
    ``EXISTING_READ`` jobs, a snapshot between two scripts. A job in none of the sorted sets
    is in a list, and which one is known without scanning it (an LPOS is O(n)): ``paused``
    while the queue is paused, else ``wait``. That holds because every script that stores a
    job puts it in exactly one state structure, a ready job into the paused list exactly while
    the queue's meta says paused (``push_ready``), and pausing and resuming move the whole
    list in the same script (the invariant checker asserts the first after every test). The
    snapshot matters: read one at a time, a job moving between two reads could be in none.
    """
    zstates = [s for s in ALL_STATES if s not in LIST_STATES]
    found: dict[str, Job] = {}
    for i in range(0, len(job_ids), EXISTING_READ):
        chunk = list(dict.fromkeys(job_ids[i : i + EXISTING_READ]))
        async with client.pipeline(transaction=True) as pipe:
            pipe.hexists(keys.meta, "paused")
            for job_id in chunk:
                pipe.hgetall(keys.job(job_id))
                for state in zstates:
                    pipe.zscore(keys.of_state(state.value), job_id)
            paused, *replies = await pipe.execute()
        listed = JobState.PAUSED if paused else JobState.WAIT
        step = 1 + len(zstates)
        for n, job_id in enumerate(chunk):
            fields, *scores = replies[n * step : (n + 1) * step]
            if not fields:
                continue
            in_zset = [s for s, score in zip(zstates, scores, strict=True) if score is not None]
            state = in_zset[0] if in_zset else listed
            found[job_id] = Job.from_hash(keys.queue, job_id, dict(fields), state)
    return found


async def read_job_state(
    client: Redis, keys: QueueKeys, job_id: str, *, list_scan_limit: int = 0
) -> JobState | None:
    """The state of ``job_id``, or None if it has no hash (or is in no state).

    Sorted sets are checked first (O(log n) each); only a job in none of them is looked for in
    the wait and paused lists, which scans them (up to ``list_scan_limit`` entries; 0 = all).
    """
    zstates = [s for s in ALL_STATES if s not in LIST_STATES]
    async with client.pipeline(transaction=False) as pipe:
        pipe.exists(keys.job(job_id))
        for state in zstates:
            pipe.zscore(keys.of_state(state.value), job_id)
        exists, *scores = await pipe.execute()
    if not exists:
        return None
    for state, score in zip(zstates, scores, strict=True):
        if score is not None:
            return state
    async with client.pipeline(transaction=False) as pipe:
        pipe.lpos(keys.wait, job_id, maxlen=list_scan_limit or None)
        pipe.lpos(keys.paused, job_id, maxlen=list_scan_limit or None)
        in_wait, in_paused = await pipe.execute()
    if in_wait is not None:
        return JobState.WAIT
    if in_paused is not None:
        return JobState.PAUSED
    return None
