"""Worker: takes jobs from one queue and runs them, ``concurrency`` at a time.

Orchestration only: the fetch loop (block on the marker, take jobs, finish one and take the
next in the same call), lock renewal, the stalled check, and graceful shutdown. Running one
job lives in ``processing.py``; while the server cannot be reached, every loop waits for the
one probe of ``reachability.py`` instead of retrying on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import commands, guards, stats
from . import sandbox as sandboxing
from .cancellation import CancelWatcher
from .completions import CompletionBatcher
from .connection import TRANSIENT_ERRORS, Connection, describe_error, make_client
from .dead_letters import record_failure
from .errors import InvalidJobOptions, JobCancelled, JobNotFound, JobStateError, LockLost
from .flow_model import Dependencies
from .flows import read_dependencies
from .job import CorruptJob, Job
from .job_types import JobTypes, bind_type
from .keys import DEFAULT_PREFIX, QueueKeys
from .locks import LockRenewer
from .metrics import DEFAULT_WINDOW_MS, validate_window
from .multiplex import MultiplexedConnection, close_quietly
from .options import (
    Backoff,
    retention_from_opts,
    timeout_from_opts,
    validate_dead_letter,
    validate_timeout,
)
from .policies import ErrorPolicy
from .prefetch import Prefetch, completion_batch
from .processing import Outcome, Processor, failure, is_async_processor, run_processor
from .rate_limit import MAX_LIMITED_SLEEP, RateLimit, manual_limit_ms
from .reachability import RECONNECT_CAP, UNREACHABLE_ERRORS, Reachability, ReconnectDelay
from .schedulers import SchedulerStore
from .scripts import ScriptRegistry
from .serialization import DEFAULT_MAX_PAYLOAD, dumps
from .server_watch import ServerWatch
from .stopping import AttemptStop
from .threads import DaemonThreadExecutor

log = logging.getLogger("corral.worker")

MAX_LOG_LINES = 1000
_NOT_MOVED = "DelayedError raised without job.move_to_delayed()"
REFUSED_RECHECK = 2.0  # seconds between checks of a server found unsafe on a reconnect


@dataclass(slots=True)
class _Running:
    job_id: str
    token: str
    task: asyncio.Task[None] | None = None
    lock_lost: bool = False
    handed_back: bool = False
    moved: bool = False  # the processor sent the job to delayed itself
    stop: AttemptStop = field(default_factory=AttemptStop)


def _positive_int(name: str, value: object, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidJobOptions(f"{name}={value!r} is invalid: expected an integer >= {low}")
    return value


class Worker:
    """Runs ``processor(job)`` for the jobs of queue ``name``; ``def`` processors run in threads."""

    def __init__(
        self,
        name: str,
        processor: Processor,
        connection: Connection = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        concurrency: int = 1,
        lock_duration: int = 30_000,
        stalled_interval: int = 30_000,
        max_stalled_count: int = 1,
        block_timeout: float = 5.0,
        shutdown_grace: float = 30.0,
        sandbox: bool | int = False,
        max_jobs: int | None = None,
        max_memory: int | str | None = None,
        restarts: int = 0,
        backoff: Backoff | None = None,
        max_result_size: int = DEFAULT_MAX_PAYLOAD,
        allow_unsafe_eviction: bool = False,
        limiter: RateLimit | Mapping[str, Any] | None = None,
        metrics_window: int = DEFAULT_WINDOW_MS,
        timeout_ms: int | None = None,
        error_policy: ErrorPolicy | None = None,
        job_error_policies: Mapping[str, ErrorPolicy] | None = None,
        dead_letter: str | None = None,
        types: JobTypes | None = None,
    ) -> None:
        if not callable(processor):
            raise InvalidJobOptions(f"processor={processor!r} is invalid: expected a callable")
        if types is not None and not isinstance(types, JobTypes):
            raise InvalidJobOptions(f"types={types!r} is invalid: expected a JobTypes")
        self.types = types if types is not None else JobTypes()
        self.keys = QueueKeys(name, prefix)
        self.concurrency = _positive_int("concurrency", concurrency)
        self.lock_duration = _positive_int("lock_duration", lock_duration, 100)
        self.stalled_interval = _positive_int("stalled_interval", stalled_interval, 10)
        self.max_stalled_count = _positive_int("max_stalled_count", max_stalled_count, 0)
        if not isinstance(block_timeout, int | float) or not 0.01 <= block_timeout <= 300:
            raise InvalidJobOptions(f"block_timeout={block_timeout!r}: expected 0.01-300 seconds")
        if not isinstance(shutdown_grace, int | float) or shutdown_grace < 0:
            raise InvalidJobOptions(f"shutdown_grace={shutdown_grace!r}: expected seconds >= 0")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise InvalidJobOptions(f"backoff={backoff!r}: expected a Backoff")
        if timeout_ms is not None:
            validate_timeout("timeout_ms", timeout_ms)
        self.timeout_ms = timeout_ms or None  # a job's own timeout_ms wins; 0 = none
        self._policy, self._name_policies = _policies(error_policy, job_error_policies)
        self.dead_letter = None if dead_letter is None else validate_dead_letter(dead_letter, name)
        self.block_timeout = float(block_timeout)
        self.shutdown_grace = float(shutdown_grace)
        self.processor = processor
        # guards: recycle after max_jobs jobs, or when memory passes max_memory (see guards.py)
        self._budget = guards.JobBudget(max_jobs)
        self.max_memory = None if max_memory is None else guards.parse_size(max_memory)
        self._memory = None if self.max_memory is None else guards.MemoryGuard(self.max_memory)
        self.restarts = _positive_int("restarts", restarts, 0)
        self.recycled: str | None = None
        self.stats = stats.WorkerStats()
        # sandbox=True: a child process per concurrency slot; sandbox=N: N children
        self._sandbox = (
            sandboxing.SandboxPool.for_processor(
                processor,
                self.concurrency if sandbox is True else sandbox,
                max_result=max_result_size,
                name=name,
                max_memory=self.max_memory,
            )
            if sandbox is not False
            else None
        )
        self._runner: Processor = self._sandbox.run if self._sandbox else processor
        self._is_async = self._sandbox is not None or is_async_processor(processor)
        self._backoff = backoff
        self._max_result = max_result_size
        self._allow_unsafe = allow_unsafe_eviction
        self.limiter = RateLimit.build(limiter)
        self.metrics_window = validate_window(metrics_window)

        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._token_base = uuid.uuid4().hex
        self._leases = 0
        # every new connection marks the watch stale: the fetch loop checks the server again
        self._watch = ServerWatch(
            self.keys, f"worker {self.id}", allow_unsafe_eviction=allow_unsafe_eviction
        )
        hook = self._watch.on_connect
        self.client, self._owns_client = make_client(connection, redis_connect_func=hook)
        self._watch.attach(self.client)
        # while the server cannot be reached, only its probe tries it; the loops wait
        self._reach = Reachability(self.client, f"worker {self.id}")
        self._blocking, _ = make_client(
            connection
            if isinstance(connection, str) or connection is None
            else _url_of(connection),
            socket_timeout=self.block_timeout + 10,
            # a closed connection is retried once, quietly; a read that outlasts the block
            # timeout by 10 s means the link went silent, which the fetch loop must hear of
            # (it drops the other idle connections, silent too, see _drop_idle_connections)
            retry=Retry(NoBackoff(), 1, supported_errors=_BLOCKING_RETRIED),
            retry_on_error=list(_BLOCKING_RETRIED),
            health_check_interval=0,
            redis_connect_func=hook,
        )
        self.scripts = ScriptRegistry(self.client)
        # the scripts of every job (take, complete, fail) share one pipelined connection
        self._wire = MultiplexedConnection.for_client(self.client, on_open=self._watch.connected)
        self._hot = ScriptRegistry(self.client, self._wire) if self._wire else self.scripts
        self._schedulers = SchedulerStore(self.client, self.scripts, self.keys)
        self._executor = DaemonThreadExecutor(thread_name_prefix=f"corral-{name}")
        self._running: dict[str, _Running] = {}
        # jobs held (active, locked) may exceed concurrency by a few while jobs are short;
        # at most ``concurrency`` of them run at once
        self._prefetch = Prefetch(self.concurrency, enabled=self._sandbox is None)
        self._run_slots = asyncio.Semaphore(self.concurrency)
        self._slot_free = asyncio.Event()
        self._closing = asyncio.Event()
        self._force = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.handed_back: list[str] = []
        self._renewer = LockRenewer(
            self.scripts,
            self.keys,
            self.lock_duration,
            self.id,
            self.concurrency,
            self._held,
            self._lock_lost,
            self._reach,
            restarts=self.restarts,
        )
        self._completions = CompletionBatcher(
            self._hot,
            self.keys,
            lambda done: self._lease(self._allowed(0 if self._closing.is_set() else done)),
            self._start,
            self.metrics_window,
            max_batch=completion_batch(self.concurrency),
        )
        self._cancels = CancelWatcher(
            self.client,
            self.keys,
            self._held,
            self._cancelled,
            self.lock_duration / 2000,
            self._reach,
        )

    # ---- public ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The queue this worker takes jobs from."""
        return self.keys.queue

    @property
    def abandoned_threads(self) -> int:
        """Threads of ``def`` processors that timed out or were cancelled and still run."""
        return self._executor.abandoned

    @property
    def in_flight(self) -> int:
        """Jobs this worker holds right now."""
        return len(self._running)

    @property
    def closing(self) -> bool:
        """True once shutdown (or a recycle) has begun."""
        return self._closing.is_set()

    @property
    def last_beat_ms(self) -> int | None:
        """When this worker last wrote its heartbeat (its own clock, ms), or None."""
        return self._renewer.last_beat_ms

    @property
    def sandbox(self) -> sandboxing.SandboxPool | None:
        """The pool of child processes when the processor is sandboxed."""
        return self._sandbox

    @property
    def running(self) -> bool:
        """True between ``run()`` starting and shutdown finishing."""
        return self._started and not self._stopped.is_set()

    async def run(self) -> None:
        """Take and run jobs until ``close()``; returns when shutdown is complete."""
        if self._started:
            raise RuntimeError(f"worker {self.id} is already running or has run")
        self._started = True
        self._loop = asyncio.get_running_loop()
        reached = False
        try:
            reached = await self._wait_for_server()
        finally:
            # refused (an unsafe server) or closed before the server answered: nothing to hand
            # back or unregister; close now, so close() returns at once
            if not reached:
                await self._release(unregister=False)
                self._stopped.set()
        if not reached:
            return
        helpers = [
            asyncio.create_task(self._renewer.run(self.client, lambda: len(self._running))),
            asyncio.create_task(self._stalled_loop()),
            asyncio.create_task(self._cancels.run()),
        ]
        if self._memory is not None:
            helpers.append(asyncio.create_task(self._memory.run(self.recycle)))
        try:
            if self._sandbox is not None:
                await self._sandbox.start()
            await self._fetch_loop()
            await self._drain_running()
        finally:
            await _cancel_all(helpers)
            await self._release()
            self._stopped.set()

    def recycle(self, reason: str) -> None:
        """Stop taking jobs and shut down gracefully because a guard tripped (``reason``);
        ``recycled`` keeps the reason, and ``corral worker`` exits with status 4."""
        if self.recycled is None and not self._closing.is_set():
            self.recycled = reason
            log.warning("worker %s: recycling: %s", self.id, reason)
        self._closing.set()

    def _allowed(self, count: int) -> int:
        """How many of ``count`` jobs the guards let the worker take now (none once over
        ``max_memory``, which recycles it; at most what is left of ``max_jobs``)."""
        if self._watch.refusal is not None:
            return 0
        count = self._budget.allow(count)
        if count and self._memory is not None and (reason := self._memory.check()):
            self.recycle(reason)
            count = 0
        return count

    def kill_sandboxed(self, job_id: str, error: BaseException | None = None) -> bool:
        """Kill the sandbox child running ``job_id``; the job fails with ``error`` (default:
        "processor exited: signal SIGKILL") and is retried by its policy. False if the worker is
        not sandboxed or no child runs that job."""
        return self._sandbox is not None and self._sandbox.kill(job_id, error)

    async def close(self, force: bool = False) -> None:
        """Stop taking jobs, let running ones finish (up to ``shutdown_grace`` seconds), hand
        back the rest to wait, and close connections. ``force`` hands back at once."""
        self._closing.set()
        if force:
            self._force.set()
        if self._started:
            await self._stopped.wait()
        else:
            await self._release()

    async def rate_limit(self, ms: int) -> None:
        """Stop every worker of the queue (on every host) from taking jobs for ``ms`` ms.
        From a processor, follow it with ``raise RateLimitError()`` to put the job back."""
        await commands.rate_limit_queue(self.scripts, self.keys, manual_limit_ms(ms))

    # ---- fetch loop ------------------------------------------------------------------------

    def _lease(self, count: int) -> commands.Lease:
        limit = self.limiter
        # A new token base for every take: a server that lost its data hands out the same job
        # ids and attempt numbers again, and an old in-flight result must not fit a new job.
        self._leases += 1
        return commands.Lease(
            f"{self._token_base}.{self._leases}",
            self.lock_duration,
            self.id,
            count,
            limit.max if limit else 0,
            limit.duration if limit else 0,
        )

    async def _wait_for_server(self) -> bool:
        """Check the server, waiting for the reachability probe while it cannot be reached
        (it says so once per 30 s): True once it passed, False if the worker started closing
        first (an attempt in progress, such as a connection that gets no answer, is abandoned
        then, not waited out). A replica counts as unreachable: the probe waits until it is a
        primary. A server that answers and refuses otherwise is checked again after each probe,
        which pauses longer each time."""
        while not self._closing.is_set():
            try:
                return await self._unless_closing(self._watch.start())
            except TRANSIENT_ERRORS as exc:
                self._reach.lost(exc, starting=True)
                await self._wait_either(self._reach.wait_up())
        return False

    async def _fetch_loop(self) -> None:
        refused = ReconnectDelay()  # the server answers, and refuses (out of memory, a failed save)
        recheck = False
        next_delay = -1
        while not self._closing.is_set():
            try:
                if not self._reach.up:  # unreachable: the probe says when to try again
                    await self._wait_either(self._reach.wait_up())
                    recheck = True
                    continue
                recheck = recheck or self._watch.stale or self._watch.refusal is not None
                if recheck or refused.failing:
                    await self._watch.recheck()  # reconnected: still safe? still the same data?
                    recheck = False
                if self._watch.refusal is not None:
                    await self._sleep_unless_closing(REFUSED_RECHECK)
                    continue
                free = self.concurrency + self._prefetch.extra - len(self._running)
                if free <= 0:
                    self._slot_free.clear()
                    await self._wait_either(self._slot_free.wait())
                    continue
                taken = await commands.move_to_active(
                    self._hot, self.keys, self._lease(self._allowed(free))
                )
                self._start(taken.jobs)
                next_delay = taken.next_delay_ms
                if refused.failing:
                    log.info("worker %s: connection to Redis is back", self.id)
                refused.failing = False
                refused.reset()
                self._reach.answered()
                if taken.jobs:
                    continue
                if taken.rate_limit_ms > 0:  # sleep out the window rather than poll
                    await self._sleep_unless_closing(
                        min(taken.rate_limit_ms / 1000, MAX_LIMITED_SLEEP)
                    )
                    continue
                timeout = self.block_timeout
                if next_delay >= 0:
                    timeout = max(min(timeout, next_delay / 1000), 0.01)
                await self._wait_either(self._blocking.bzpopmin(self.keys.marker, timeout))
            except TRANSIENT_ERRORS as exc:
                recheck = True
                await self._fetch_failed(exc, refused)

    async def _fetch_failed(self, exc: Exception, refused: ReconnectDelay) -> None:
        """A call of the fetch loop failed with ``exc``: report a server that cannot be reached
        (the loop then waits for the probe), or back off from one that answers and refuses."""
        if isinstance(exc, RedisTimeoutError):
            await self._drop_idle_connections()
        if isinstance(exc, UNREACHABLE_ERRORS):
            self._reach.lost(exc)  # it logs the loss (and later the return)
            return
        if not refused.failing:
            log.warning("worker %s: lost Redis (%s); reconnecting", self.id, describe_error(exc))
        refused.failing = True
        await self._sleep_unless_closing(refused.next())

    async def _before_retry(self, exc: Exception, backoff: ReconnectDelay) -> None:
        """Wait before a call that failed with ``exc`` is tried again: until the probe reaches
        the server if it could not be reached (``Reachability``), else (it answered, and
        refused: out of memory, a failed save) for the next of ``backoff``'s delays."""
        if isinstance(exc, UNREACHABLE_ERRORS):
            self._reach.lost(exc)
            await self._reach.wait_up()
        else:
            await asyncio.sleep(backoff.next())

    async def _drop_idle_connections(self) -> None:
        """A read timed out, so the link may have gone silent (half-open) for every connection
        opened before: drop the idle ones, so that the next calls connect afresh instead of
        each waiting out its own timeout first. Calls in flight keep their own timeouts."""
        if self._wire is not None:
            self._wire.drop_if_idle()
        with contextlib.suppress(Exception):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def _unless_closing(self, awaitable: Awaitable[object]) -> bool:
        """Await ``awaitable`` unless the worker starts closing first, which cancels it: True
        when it finished (raising what it raised), False when it was cancelled."""
        task = asyncio.ensure_future(awaitable)
        await self._wait_either(task)
        if task.cancelled():
            return False
        task.result()
        return True

    async def _wait_either(self, awaitable: Any) -> None:
        """Wait for ``awaitable`` unless the worker starts closing first."""
        task = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, *TRANSIENT_ERRORS):
                await task
            return
        task.result()

    async def _sleep_unless_closing(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # ---- one job ---------------------------------------------------------------------------

    def _start(self, jobs: list[commands.TakenJob]) -> None:
        keep = 0 if self._closing.is_set() else self._budget.take(len(jobs))
        if keep and self._budget.used_up:
            self.recycle(f"took its --max-jobs {self._budget.max_jobs} jobs")
        for index, taken in enumerate(jobs):
            running = _Running(taken.id, taken.token)
            self._running[taken.id] = running
            work = self._process if index < keep else self._give_back
            running.task = asyncio.create_task(work(taken, running))

    async def _give_back(self, taken: commands.TakenJob, running: _Running) -> None:
        """Return a job taken beyond ``max_jobs``, or after closing began, to the front of the
        queue, unrun."""
        try:
            await commands.hand_back_job(self.scripts, self.keys, taken.id, taken.token)
        except _GIVE_BACK_ERRORS as exc:
            log.warning("worker %s: job %s left to the stalled check (%s)", self.id, taken.id, exc)
        finally:
            if self._running.get(taken.id) is running:
                del self._running[taken.id]
            self._slot_free.set()

    async def _process(self, taken: commands.TakenJob, running: _Running) -> None:
        try:
            held = self._run_slots.locked()  # taken beyond concurrency: it waits for a slot
            async with self._run_slots:
                if running.handed_back:
                    return  # handed back at shutdown while it waited
                if held and self._closing.is_set():  # shutting down: back to wait, unrun
                    await self._give_back(taken, running)
                    return
                job, outcome = await self._run(taken, running)
            if running.moved:
                return  # move_to_delayed already released the job; any result is moot
            await self._finish(taken, running, job, outcome)
        except asyncio.CancelledError:
            if not running.handed_back:
                raise
        except Exception:
            log.exception("worker %s: unexpected error finishing job %s", self.id, taken.id)
        finally:
            if self._running.get(taken.id) is running:
                del self._running[taken.id]
            self._slot_free.set()

    async def _run(self, taken: commands.TakenJob, running: _Running) -> tuple[Job | None, Outcome]:
        """Build the job from its hash and run one attempt of it."""
        try:
            job = Job.from_hash(self.name, taken.id, taken.fields, None, _Context(self, running))
        except CorruptJob as exc:
            return None, Outcome(False, reason=str(exc), retry_delay=-1)
        if job.scheduler_id is not None:  # a scheduler's job: create the next tick's
            await self._schedulers.schedule_next(job.scheduler_id, job.id)
        job, refused = bind_type(self.types, job)
        if refused:
            return job, refused
        began = time.perf_counter()
        outcome = await run_processor(
            self._runner,
            job,
            is_async=self._is_async,
            executor=self._executor,
            max_result=self._max_result,
            default_backoff=self._backoff,
            timeout_ms=timeout_from_opts(job.opts, self.timeout_ms),
            stop=running.stop,
            policy=self._name_policies.get(job.name, self._policy),
        )
        self._prefetch.ran((time.perf_counter() - began) * 1000)
        if outcome.requeue == "delayed" and not running.moved:
            outcome = failure(job, RuntimeError(_NOT_MOVED), self._backoff)
        return job, outcome

    async def _finish(
        self, taken: commands.TakenJob, running: _Running, job: Job | None, outcome: Outcome
    ) -> None:
        if outcome.requeue:
            await self._requeue(taken, running)
            return
        opts = job.opts if job is not None else {}
        parent = commands.parent_queue(taken.fields)
        keep = retention_from_opts(opts, "remove_on_complete")
        backoff = ReconnectDelay()
        while True:
            if not self._reach.up:  # no call while the server is known to be unreachable
                await self._reach.wait_up()
            try:
                if outcome.ok and parent is None:
                    # batched with the jobs that finish meanwhile; takes their replacements
                    await self._completions.complete(
                        commands.Completion(
                            taken.id,
                            running.token,
                            outcome.returnvalue,
                            keep,
                        )
                    )
                    break
                # take a replacement job in the same call unless the worker is closing
                lease = self._lease(self._allowed(0 if self._closing.is_set() else 1))
                if outcome.ok:
                    nxt = await commands.complete_job(
                        self._hot,
                        self.keys,
                        taken.id,
                        running.token,
                        outcome.returnvalue,
                        keep,
                        lease,
                        self.metrics_window,
                        parent,
                    )
                else:
                    nxt = await record_failure(
                        self._hot,
                        self.keys,
                        taken.id,
                        running.token,
                        outcome,
                        retention_from_opts(opts, "remove_on_fail"),
                        lease,
                        opts.get("dead_letter") or self.dead_letter if job else None,
                        self.metrics_window,
                        parent,
                    )
            except (LockLost, JobNotFound, JobStateError) as exc:
                log.warning("worker %s: result of job %s discarded: %s", self.id, taken.id, exc)
                return
            except TRANSIENT_ERRORS as exc:
                if not backoff.failing:
                    log.warning(
                        "worker %s: cannot record job %s yet (%s)",
                        self.id,
                        taken.id,
                        describe_error(exc),
                    )
                backoff.failing = True
                await self._before_retry(exc, backoff)
                continue
            # a lease made before the worker started closing may still bring a job: _start gives
            # it back rather than leave it active with nobody renewing its lock
            self._start(nxt.jobs)
            break
        self.stats.finished(outcome.ok, outcome.retry_delay)

    async def _requeue(self, taken: commands.TakenJob, running: _Running) -> None:
        """The processor raised RateLimitError: the job goes back to the front of wait."""
        backoff = ReconnectDelay()
        while True:
            if not self._reach.up:  # no call while the server is known to be unreachable
                await self._reach.wait_up()
            try:
                await commands.hand_back_job(
                    self.scripts,
                    self.keys,
                    taken.id,
                    running.token,
                    reason="rate limited",
                    undo_start=False,
                )
                return
            except (LockLost, JobNotFound, JobStateError) as exc:
                log.warning("worker %s: job %s not put back: %s", self.id, taken.id, exc)
                return
            except TRANSIENT_ERRORS as exc:
                if not backoff.failing:
                    log.warning(
                        "worker %s: cannot put job %s back yet (%s)",
                        self.id,
                        taken.id,
                        describe_error(exc),
                    )
                backoff.failing = True
                await self._before_retry(exc, backoff)

    # ---- locks, stalled jobs, shutdown -----------------------------------------------------

    def _held(self) -> list[tuple[str, str]]:
        return [(r.job_id, r.token) for r in self._running.values() if not (r.lock_lost or r.moved)]

    def _lock_lost(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None and not running.lock_lost:
            running.lock_lost = True
            log.warning(
                "worker %s: lost the lock of job %s; another worker may run it, and this "
                "worker's result will be discarded",
                self.id,
                job_id,
            )

    def _cancelled(self, job_id: str, by: str) -> None:
        running = self._running.get(job_id)
        if running is not None and running.stop.request(JobCancelled(f"cancelled by {by}")):
            log.info("worker %s: job %s cancelled by %s; stopping it", self.id, job_id, by)

    async def _stalled_loop(self) -> None:
        interval = self.stalled_interval / 1000
        delay = interval  # backs off while the server refuses: no fixed-rate retries
        while True:
            await self._reach.wait_up()  # while it is unreachable, only the probe tries it
            try:
                recovered, failed = await commands.recover_stalled(
                    self.scripts,
                    self.keys,
                    self.max_stalled_count,
                    self.stalled_interval,
                    self.metrics_window,
                )
                await self._watch.remember_queue()
                if recovered or failed:
                    log.warning(
                        "queue %s: %d stalled job(s) moved back to wait, %d failed for stalling "
                        "too often",
                        self.name,
                        len(recovered),
                        len(failed),
                    )
                delay = interval
            except UNREACHABLE_ERRORS as exc:
                self._reach.lost(exc)
                continue  # and check at once when the server is back
            except TRANSIENT_ERRORS:  # it answers, and refuses: back off
                delay = min(delay * 2, max(interval, RECONNECT_CAP))
            await asyncio.sleep(delay)

    async def _drain_running(self) -> None:
        """Shutdown: let running jobs finish within the grace period, then hand back the rest."""
        tasks = [r.task for r in self._running.values() if r.task is not None]
        if tasks and not self._force.is_set():
            force = asyncio.ensure_future(self._force.wait())
            await _wait_all_or(tasks, force, self.shutdown_grace)
            force.cancel()
        await self._hand_back()

    async def _hand_back(self) -> None:
        left = list(self._running.values())
        for running in left:
            running.handed_back = True
            if running.task is not None and self._is_async:
                running.task.cancel()
        for running in left:
            try:
                if self._reach.up:  # else each call would only wait out its retries
                    await commands.hand_back_job(
                        self.scripts, self.keys, running.job_id, running.token
                    )
                    self.handed_back.append(running.job_id)
                    continue
            except (LockLost, JobNotFound, JobStateError):
                continue  # finished, or recovered by another worker, meanwhile
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, UNREACHABLE_ERRORS):
                    self._reach.lost(exc)
            log.warning(
                "worker %s: Redis unreachable; job %s is left to the stalled check",
                self.id,
                running.job_id,
            )
        if self.handed_back:
            log.warning(
                "worker %s: handed back unfinished job(s) %s", self.id, ", ".join(self.handed_back)
            )
        tasks = [r.task for r in left if r.task is not None and self._is_async]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    async def _release(self, unregister: bool = True) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._sandbox is not None:
            await self._sandbox.close()
        if unregister and self._reach.up:  # else its record expires by itself
            with contextlib.suppress(*TRANSIENT_ERRORS):
                await self.client.delete(self.keys.worker(self.id))
                await self.client.zrem(self.keys.workers, self.id)
        await self._reach.close()
        await close_quietly(self._wire)
        if self._owns_client:
            await self.client.aclose()
        await self._blocking.aclose()


async def _wait_all_or(
    tasks: list[asyncio.Task[None]], stop: asyncio.Future[Any], seconds: float
) -> None:
    """Wait until all ``tasks`` are done, ``stop`` completes, or ``seconds`` pass."""
    everything = asyncio.ensure_future(asyncio.wait(tasks))
    await asyncio.wait({everything, stop}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    everything.cancel()


def _policies(
    queue_policy: object, by_name: object
) -> tuple[ErrorPolicy | None, dict[str, ErrorPolicy]]:
    """Check the worker's error policies; each job name's policy is merged over the queue's."""
    if queue_policy is not None and not isinstance(queue_policy, ErrorPolicy):
        raise InvalidJobOptions(f"error_policy={queue_policy!r}: expected an ErrorPolicy")
    if by_name is None:
        return queue_policy, {}
    if not isinstance(by_name, Mapping) or not all(
        isinstance(k, str) and isinstance(v, ErrorPolicy) for k, v in by_name.items()
    ):
        raise InvalidJobOptions(
            f"job_error_policies={by_name!r}: expected {{job name: ErrorPolicy}}"
        )
    return queue_policy, {name: p.over(queue_policy) for name, p in by_name.items()}


_RECANCEL = 0.05  # s between cancels of a helper that swallowed one (see _cancel_all)

_BLOCKING_RETRIED: tuple[type[Exception], ...] = tuple(
    e for e in TRANSIENT_ERRORS if not issubclass(e, RedisTimeoutError)
)
"""Errors the blocking fetch retries once by itself: all transient ones but a timeout."""

_GIVE_BACK_ERRORS: tuple[type[Exception], ...] = (
    LockLost,
    JobNotFound,
    JobStateError,
    *TRANSIENT_ERRORS,
)


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again any that swallowed it (redis-py can
    turn a cancellation during a connect into a connection error, which the loops retry, and
    Python 3.11's ``asyncio.wait_for``, around each socket write of redis-py, drops a
    cancellation that lands as the write completes). Again soon, not once per renewal period:
    a helper with a fixed period would otherwise swallow every cancel in lockstep."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=_RECANCEL)


def _url_of(client: Any) -> str:
    """Rebuild a URL for a second connection to the server ``client`` talks to."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    scheme = "rediss" if kw.get("ssl") or "ssl_context" in kw else "redis"
    auth = ""
    if kw.get("password"):
        auth = f"{kw.get('username') or ''}:{kw['password']}@"
    return (
        f"{scheme}://{auth}{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    )


class _Context:
    """Lets a running job write progress and logs under the worker's lock token."""

    def __init__(self, worker: Worker, running: _Running) -> None:
        self._worker = worker
        self._running = running

    async def update_progress(self, job_id: str, progress: Any) -> None:
        value = dumps(progress, what=f"progress of job {job_id!r}", limit=64 * 1024)
        w = self._worker
        await commands.update_progress(w.scripts, w.keys, job_id, self._running.token, value)

    async def log(self, job_id: str, line: str) -> None:
        w = self._worker
        token = self._running.token
        await commands.add_log(w.scripts, w.keys, job_id, token, str(line)[:10_000], MAX_LOG_LINES)

    async def update_data(self, job_id: str, data: Any) -> None:
        w = self._worker
        value = dumps(data, what=f"data of job {job_id!r}", limit=w._max_result)
        await commands.update_data(w.scripts, w.keys, job_id, value, self._running.token)

    async def extend_lock(self, job_id: str, ms: int) -> None:
        w = self._worker
        held = [(job_id, self._running.token)]
        if await commands.extend_locks(w.scripts, w.keys, ms, held):
            raise LockLost(f"job {job_id!r} in queue {w.name!r}: lock is gone (extend_lock)")

    async def move_to_delayed(self, job_id: str, run_at: int, delay: int) -> int:
        w = self._worker
        due = await commands.move_to_delayed(
            w.scripts, w.keys, job_id, self._running.token, run_at=run_at, delay=delay
        )
        self._running.moved = True
        return due

    async def read_dependencies(self, job_id: str) -> Dependencies:
        w = self._worker
        return await read_dependencies(w.client, w.keys, job_id)

    def stop_reason(self, job_id: str) -> BaseException | None:
        return self._running.stop.reason

    def run_sync(self, coro: Any) -> Any:
        loop = self._worker._loop
        assert loop is not None
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
