"""``QueueMonitor``: watches every queue and yields coalesced ``DashboardSnapshot``s.

It finds queues step by step (from a backend that can: those a few random keys name at once,
then each one a SCAN finds while that SCAN goes on; with ``queues`` given, no discovery at all),
reads all counts in one pipeline, tails the events streams with one XREAD, and uses keyspace
notifications as "queue changed" hints only when the server already sends them (it never turns
them on; read-only, it never reads the server's config and listens anyway: the first
notification turns the mode to LIVE). It reads the last hour of per-minute finished counts (the
server's metrics) when it starts, and the newest minutes every ``history_interval`` seconds.
Pub/sub, stream reads and counts use separate connections.
A lost connection turns the mode to DISCONNECTED, keeps the last data, and reconnects with
exponential backoff. No Textual here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dashboard.backend import Backend, FeatureUnavailable, QueueReading
from dashboard.conn_errors import connect, describe_error, greet
from dashboard.event_tail import EventTail
from dashboard.eviction import read_policy
from dashboard.model import Breach, DashboardSnapshot, Event, MinuteHistory, Mode, QueueSnapshot
from dashboard.notifications import keyspace_enabled
from dashboard.server_role import replica_refusal
from dashboard.throughput import Throughput
from engine.health import Thresholds

CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
RECENT_EVENTS = 100
BREAKER_EVENTS = 20
STALLED_WINDOW_S = 60.0
HISTORY_MINUTES = 60
"""Minutes of per-minute history (the server's metrics) the overview chart shows."""
RECENT_MINUTES = 2
"""Minutes re-read on each history refresh: the current one, and the one before it."""
MINUTE_MS = 60_000
GAP_ALERT_S = 10.0
"""A trimmed-events alert stays at least this long (so it is seen), and then until the queue's
counts have been read again after the gap (the counts are exact again: resynced)."""
SOCKET_TIMEOUT_S = 3.0
"""How long the monitor waits for a reply before it calls the connection lost (its stream reads
wait ``block_ms`` longer). A link that went silent (a partition, a blackhole) shows DISCONNECTED
within a poll interval plus this, so within 5 s at the default 1 s poll; its reads are bounded
(counts, pages of a SCAN, ranges), so a healthy server answers far sooner."""
BUSY_ROUND_S = 0.05
"""Shortest time between two stream reads while entries keep coming: a busy stream is then read
in a few large rounds a second instead of many small ones (a quiet one is still read at once).
A round that left entries unread (``TailRound.behind``) is followed by the next one at once."""


@runtime_checkable
class FindsQueuesInSteps(Protocol):
    """A backend that finds queues a few at a time: the monitor shows each one as soon as it is
    found. The monitor asks other backends ``discover_queues`` for the whole list at once."""

    async def sample_queues(self, client: Redis) -> list[str]:
        """Queues found in a round trip or two, without a SCAN (some, not all)."""
        ...

    async def confirm_queues(self, client: Redis, names: Sequence[str]) -> list[str]:
        """Those of ``names`` that are queues."""
        ...

    def scan_queues(self, client: Redis) -> AsyncIterator[list[str]]:
        """The queues of each step of one SCAN; all of them once it ends."""
        ...


class _Relisten(Exception):
    """Notifications were turned on while polling: end the session so a new one listens."""


class QueueMonitor:
    """The dashboard's data source; iterate ``snapshots()`` to run it."""

    def __init__(
        self,
        backend: Backend,
        url: str,
        *,
        queues: Sequence[str] = (),
        poll_interval: float = 1.0,
        discover_interval: float = 10.0,
        max_rate: float = 10.0,
        block_ms: int = 1_000,
        backoff_cap: float = 4.0,
        history_interval: float = 10.0,
        thresholds: Thresholds | None = None,
        health_interval: float = 5.0,
        gap_alert_s: float = GAP_ALERT_S,
        read_only: bool = False,
    ) -> None:
        self.backend = backend
        self.read_only = read_only
        """Never reads the server's config (a read-only ACL user has no CONFIG)."""
        self.url = url
        self.fixed_queues = tuple(queues)
        self.poll_interval = max(poll_interval, 0.05)
        self.discover_interval = discover_interval
        self._discover_every = discover_interval
        self.min_gap = 1.0 / max_rate
        self.backoff_cap = backoff_cap
        self.history_interval = history_interval
        self.thresholds = thresholds if thresholds is not None and thresholds.any else None
        self.health_interval = health_interval
        self.breaches: tuple[Breach, ...] = ()
        self.breaches_read = False
        self.health_note: str | None = None
        self.tail = EventTail(backend, block_ms, keep=RECENT_EVENTS)
        self.throughput = Throughput()
        self.mode = Mode.DISCONNECTED
        self.as_of: float | None = None
        self.error: str | None = None
        self.notify_flags: str | None = None
        self.maxmemory_policy: str | None = None
        self.replica: str | None = None
        """Both read at every (re)connect: a failover may land on a node configured otherwise,
        or make this one a replica."""
        self._recheck = False
        self.queues: list[str] = list(self.fixed_queues)
        self.readings: dict[str, QueueReading] = {}
        self.gap_alert_s = gap_alert_s
        self.gaps: dict[str, float] = {}
        """Queues whose events were trimmed before they were read, and when (monotonic s)."""
        self.events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._stalled: deque[tuple[float, Event]] = deque(maxlen=RECENT_EVENTS)
        self._breaker_events: deque[Event] = deque(maxlen=BREAKER_EVENTS)
        self._minutes: dict[str, dict[int, tuple[int, int]]] = {}
        self._history_end: int | None = None
        self._hours: dict[str | None, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        """The hour series of each queue and of all (None), rebuilt when history is read."""
        self._dirty = asyncio.Event()
        self._changed = asyncio.Event()
        self._discovered_at = -1e9
        self.discovering = False
        """True while a whole discovery (the SCAN) runs; queues found so far are shown."""
        self.discoveries = 0
        """Whole discoveries completed (each SCAN to its end) since the monitor started."""
        self._rediscover = asyncio.Event()
        self._hinted: set[str] = set()
        """Unknown queues notifications named since the last discovery step (checked first)."""
        self._not_queues: set[str] = set()
        """Names checked and found not to be queues, until the next whole discovery."""
        self._found_new = asyncio.Event()
        self._counted_at = -1e9
        self._healthy = False
        self._stopping = False

    # -- the public side ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Ask for a recount now (after an action, or when a screen opens)."""
        self._dirty.set()

    def recheck_notifications(self) -> None:
        """Read ``notify-keyspace-events`` again on the next count: when an operator turned
        notifications on, the monitor starts listening (LIVE) instead of polling."""
        self._recheck = True
        self._dirty.set()

    def snapshot(self) -> DashboardSnapshot:
        """The current state as a frozen snapshot."""
        queues = tuple(self._queue_snapshot(name) for name in sorted(self.readings))
        hour_completed, hour_failed = self._hours.get(None, ((), ()))
        return DashboardSnapshot(
            queues=queues,
            mode=self.mode,
            as_of=self.as_of,
            alerts=(
                tuple(b.text for b in self.breaches)
                + ((self.health_note,) if self.health_note else ())
                + self._alerts(queues)
            ),
            breaches=self.breaches,
            breaches_read=self.breaches_read,
            completed_history=tuple(self.throughput.completed_history),
            failed_history=tuple(self.throughput.failed_history),
            recent_events=tuple(self.events),
            stalled_events=tuple(event for _, event in self._stalled),
            breaker_events=tuple(self._breaker_events),
            error=self.error,
            hour_completed=hour_completed,
            hour_failed=hour_failed,
            notify_flags=self.notify_flags,
            maxmemory_policy=self.maxmemory_policy,
            replica=self.replica,
        )

    async def snapshots(self) -> AsyncGenerator[DashboardSnapshot, None]:
        """Run the monitor and yield a snapshot whenever something changed, at most ``max_rate``/s.

        Iterate and close the iterator in one task (as one Textual worker does).
        """
        loop = asyncio.get_running_loop()
        runner = asyncio.create_task(self._run(), name="queue-monitor")
        last = -1e9
        try:
            while True:
                changed = asyncio.create_task(self._changed.wait())
                await asyncio.wait({changed, runner}, return_when=asyncio.FIRST_COMPLETED)
                if runner.done():
                    changed.cancel()
                    runner.result()
                    return
                wait = last + self.min_gap - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._changed.clear()
                last = loop.time()
                yield self.snapshot()
        finally:
            self._stopping = True
            runner.cancel()
            # never hang on close: a blocked stream read ends within block_ms by itself
            await asyncio.wait({runner}, timeout=self.tail.block_ms / 1000 + 2.0)
            if runner.done() and not runner.cancelled():
                runner.exception()  # retrieved, so asyncio does not log it

    # -- building snapshots ------------------------------------------------------------------

    def _queue_snapshot(self, name: str) -> QueueSnapshot:
        reading = self.readings[name]
        completed, failed = self.throughput.rates(name)
        completed_history, failed_history = self.throughput.split_history(name)
        hour_completed, hour_failed = self._hours.get(name, ((), ()))
        return QueueSnapshot(
            name=name,
            paused=reading.paused,
            counts=reading.counts,
            completed_per_sec=completed,
            failed_per_sec=failed,
            history=self.throughput.history(name),
            workers=reading.workers,
            oldest_wait_age_ms=reading.oldest_wait_ms,
            events_gap=name in self.gaps,
            breaker=reading.breaker,
            breaker_reason=reading.breaker_reason,
            dead_letter=reading.dead_letter,
            completed_history=completed_history,
            failed_history=failed_history,
            hour_completed=hour_completed,
            hour_failed=hour_failed,
        )

    def _alerts(self, queues: Sequence[QueueSnapshot]) -> tuple[str, ...]:
        alerts = []
        for queue in queues:
            if queue.events_gap:
                alerts.append(f"{queue.name}: events trimmed before they were read")
            ready = queue.counts.wait + queue.counts.prioritized
            if queue.workers == 0 and ready and not queue.paused:
                alerts.append(f"{queue.name}: {ready} waiting, no live worker")
            if queue.breaker is not None:
                why = f" ({queue.breaker_reason})" if queue.breaker_reason else ""
                alerts.append(f"{queue.name}: circuit breaker {queue.breaker}{why}")
        horizon = time.monotonic() - STALLED_WINDOW_S
        stalled: dict[str, int] = {}
        for seen, stalled_event in self._stalled:
            queue_name = stalled_event.queue
            if seen >= horizon:
                stalled[queue_name] = stalled.get(queue_name, 0) + 1
        alerts.extend(f"{name}: {n} stalled (1 min)" for name, n in stalled.items())
        return tuple(alerts)

    def _hour(self, queues: Sequence[str] | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Completed and failed per minute over ``queues`` (default all), the last
        ``HISTORY_MINUTES``."""
        end = self._history_end
        if end is None:
            return (), ()
        minutes = [end - (HISTORY_MINUTES - 1 - i) * MINUTE_MS for i in range(HISTORY_MINUTES)]
        if queues is None:
            series = list(self._minutes.values())
        else:
            series = [self._minutes[q] for q in queues if q in self._minutes]
        completed = tuple(sum(s.get(m, (0, 0))[0] for s in series) for m in minutes)
        failed = tuple(sum(s.get(m, (0, 0))[1] for s in series) for m in minutes)
        return completed, failed

    def _publish(self) -> None:
        self._changed.set()

    # -- the loops ---------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._healthy = False
            restart = False
            try:
                await self._session()
            except* _Relisten:
                restart = True
            except* CONNECTION_ERRORS as group:
                self._set_error(Mode.DISCONNECTED, group.exceptions[0])
            except* RedisError as group:
                self._set_error(self.mode, group.exceptions[0])
            else:
                return
            if self._stopping:
                # a cancel that surfaced as an error in a child task (TaskGroup on 3.11)
                raise asyncio.CancelledError
            if restart:  # notifications were turned on: a new session subscribes at once
                attempt = 0
                continue
            if self._healthy:  # the session worked for a while: start the backoff over
                attempt = 0
            await asyncio.sleep(min(self.backoff_cap, 0.25 * 2**attempt))
            attempt += 1

    def _set_error(self, mode: Mode, exc: BaseException) -> None:
        self.mode = mode
        # specific and redacted (the URL is on screen masked); the URL's scheme tells TLS
        self.error = describe_error(exc, url=self.url)
        self._publish()

    def _client(self, socket_timeout: float) -> Redis:
        client: Redis = Redis.from_url(
            self.url,
            decode_responses=True,
            encoding_errors="surrogateescape",  # not UTF-8: read and sent back as the same bytes
            socket_connect_timeout=3.0,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), retries=0),  # the monitor reconnects itself, with backoff
            redis_connect_func=greet,  # notes a failure after the socket (and TLS) were made
        )
        return client

    async def _session(self) -> None:
        counts = self._client(SOCKET_TIMEOUT_S)
        streams = self._client(SOCKET_TIMEOUT_S + self.tail.block_ms / 1000)
        pubsub_client = self._client(SOCKET_TIMEOUT_S)
        try:
            await connect(counts, self.url)  # a failure here is one of connecting
            self.maxmemory_policy = await read_policy(counts)  # R5: again after each reconnect
            self.replica = await replica_refusal(counts)  # Z2: a failover may demote it
            live = await self._notifications_on(counts)
            self.mode = Mode.LIVE if live else Mode.POLLING
            await self._first_queues(counts)
            await self._count(counts)
            self.error = None  # only once the counts were read: an ACL refusal stays on screen
            self._healthy = True
            async with asyncio.TaskGroup() as group:
                group.create_task(self._counts_loop(counts))
                group.create_task(self._history_loop(counts))
                group.create_task(self._events_loop(streams))
                if self.thresholds is not None:
                    group.create_task(self._health_loop(counts, self.thresholds))
                if not self.fixed_queues:
                    group.create_task(self._discovery_loop(counts))
                if live or self.notify_flags is None:  # on, or unknown: listen and see
                    group.create_task(self._keyspace_loop(pubsub_client, counts))
        finally:
            for client in (counts, streams, pubsub_client):
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def _notifications_on(self, client: Redis) -> bool:
        if self.read_only:  # no CONFIG GET: the ACL user of a read-only dashboard lacks it
            self.notify_flags = None
            return False
        try:
            config = await client.config_get("notify-keyspace-events")
        except ResponseError:  # CONFIG refused (ACL, managed service): poll instead
            self.notify_flags = None
            return False
        self.notify_flags = str(config.get("notify-keyspace-events", ""))
        return keyspace_enabled(self.notify_flags)

    async def _count(self, client: Redis) -> None:
        started = time.monotonic()
        self.readings = await self.backend.read_counts(client, self.queues)
        self._clear_gaps(started)
        self._counted_at = time.monotonic()
        self.as_of = time.time()
        self.throughput.observe(
            time.monotonic(),
            {q: (r.completed_total, r.failed_total) for q, r in self.readings.items()},
        )
        self._publish()

    # -- finding the queues -------------------------------------------------------------------

    async def _first_queues(self, client: Redis) -> None:
        """Before the first count: the queues found at once (sampled) from a backend that finds
        them step by step (the discovery loop then SCANs); from another, all of them."""
        self._discovered_at = -1e9  # and a whole discovery at each (re)connect
        if self.fixed_queues:
            return
        if isinstance(self.backend, FindsQueuesInSteps):
            self._add_queues(await self.backend.sample_queues(client))
        else:
            await self._discover(client)

    async def _discovery_loop(self, client: Redis) -> None:
        """A whole discovery now (unless one just ran), then every ``_discover_every`` seconds;
        a queue a notification names is checked at once on its own (its meta key)."""
        while True:
            wait = self._discovered_at + self._discover_every - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rediscover.wait(), wait)
            self._rediscover.clear()
            hinted, self._hinted = sorted(self._hinted), set()
            if hinted and isinstance(self.backend, FindsQueuesInSteps):
                found = await self.backend.confirm_queues(client, hinted)
                self._not_queues.update(set(hinted) - set(found))
                self._add_queues(found)
                if time.monotonic() < self._discovered_at + self._discover_every:
                    continue
            await self._discover(client)
            self._not_queues.update(q for q in hinted if q not in self.queues)

    async def _discover(self, client: Redis) -> None:
        """Find every queue; each one is counted (shown) as soon as its SCAN step found it."""
        started = time.monotonic()
        known = set(self.queues)
        self.discovering = True
        try:
            if isinstance(self.backend, FindsQueuesInSteps):
                found: set[str] = set()
                async for names in self.backend.scan_queues(client):
                    found.update(names)
                    self._add_queues(names)
            else:
                found = set(await self.backend.discover_queues(client))
                self._add_queues(found)
        finally:
            self.discovering = False
        # a queue known when the SCAN began and not found by it is gone; one found meanwhile
        # (sampled, named by a notification) stays: a SCAN may miss keys added while it runs
        self._drop_queues(known - found)
        self._not_queues.clear()
        self.discoveries += 1
        self._discovered_at = time.monotonic()
        # a SCAN of a big keyspace is not free: never spend more than ~5 % of the time on it
        self._discover_every = max(self.discover_interval, 20 * (self._discovered_at - started))
        self._publish()  # ``discovering`` is over, even when no queue came or went

    def _add_queues(self, names: Iterable[str]) -> None:
        new = set(names).difference(self.queues)
        if new:
            self.queues = sorted(new.union(self.queues))
            self._dirty.set()  # counted, so shown, at the next count
            self._found_new.set()  # their last hour is read now, not at the next round

    def _drop_queues(self, gone: set[str]) -> None:
        if not gone:
            return
        self.queues = [q for q in self.queues if q not in gone]
        self.tail.forget([q for q in self.tail.last_ids if q in gone])
        for queue in gone & set(self.gaps):
            del self.gaps[queue]
        self._dirty.set()

    def _clear_gaps(self, counted_from: float) -> None:
        """Drop the alert of each gap these counts (read from ``counted_from``) resynced, once
        it was up for ``gap_alert_s``."""
        for queue, found in list(self.gaps.items()):
            if found < counted_from and counted_from - found >= self.gap_alert_s:
                del self.gaps[queue]

    async def _counts_loop(self, client: Redis) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.poll_interval)
            # a burst of hints folds into one recount per min_gap
            await asyncio.sleep(max(0.0, self._counted_at + self.min_gap - time.monotonic()))
            self._dirty.clear()
            await self._count(client)
            if self._recheck:
                self._recheck = False
                if self.mode is Mode.POLLING and await self._notifications_on(client):
                    raise _Relisten

    async def _history_loop(self, client: Redis) -> None:
        """The last hour of per-minute counts for queues seen for the first time, then the
        newest minutes of every queue, every ``history_interval`` seconds (at once when
        discovery found queues)."""
        while True:
            self._found_new.clear()
            try:
                await self._read_history(client)
            except (ResponseError, FeatureUnavailable):  # refused, or not for this backend
                return
            await asyncio.sleep(self.min_gap)
            with contextlib.suppress(TimeoutError):  # sooner when discovery found queues
                await asyncio.wait_for(self._found_new.wait(), self.history_interval)

    async def _health_loop(self, client: Redis, limits: Thresholds) -> None:
        """Measure the queues against the thresholds every ``health_interval`` seconds, or
        less often when measuring takes long (the failed and stalled counts page through the
        window's events): never more than ~5 % of the time."""
        while True:
            started = time.monotonic()
            try:
                found = await self.backend.read_breaches(client, list(self.queues), limits)
            except FeatureUnavailable as exc:  # an alert of its own, never taken for a breach
                self.health_note = f"thresholds not checked: {exc}"
                self._publish()
                return
            self.breaches, self.breaches_read = tuple(found), True
            self._publish()
            spent = time.monotonic() - started
            await asyncio.sleep(max(self.health_interval, 20 * spent))

    async def _read_history(self, client: Redis) -> None:
        queues = list(self.queues)
        for gone in set(self._minutes) - set(queues):
            del self._minutes[gone]
        new = [q for q in queues if q not in self._minutes]
        known = [q for q in queues if q in self._minutes]
        for names, minutes in ((new, HISTORY_MINUTES), (known, RECENT_MINUTES)):
            if names:
                self._merge(await self.backend.read_minute_history(client, names, minutes))
        self._hours = {None: self._hour(), **{q: self._hour((q,)) for q in self._minutes}}
        self._publish()

    def _merge(self, history: MinuteHistory) -> None:
        end = history.end_minute_ms
        horizon = end - (HISTORY_MINUTES - 1) * MINUTE_MS
        for queue, rows in history.counts.items():
            series = self._minutes.setdefault(queue, {})
            for index, counts in enumerate(rows):
                series[end - (len(rows) - 1 - index) * MINUTE_MS] = counts
            for minute in [m for m in series if m < horizon]:
                del series[minute]
        self._history_end = max(self._history_end or end, end)

    async def _events_loop(self, client: Redis) -> None:
        while not self._stopping:
            if not self.queues:
                await asyncio.sleep(self.poll_interval)
                continue
            started = time.monotonic()
            round_ = await self.tail.read(client, list(self.queues))
            for queue in round_.gaps:
                self.gaps[queue] = time.monotonic()
            if round_.gaps:
                self._dirty.set()
            for event in round_.events:
                self.events.append(event)
                if event.event == "stalled":
                    self._stalled.append((time.monotonic(), event))
                elif event.event == "breaker":
                    self._breaker_events.append(event)
            if round_.read:
                # the recount publishes: a snapshot now would show the old counts and hold the
                # new ones back for a whole min_gap
                self._dirty.set()
                if not round_.behind:  # behind: entries already wait, read on before the trim
                    await asyncio.sleep(max(0.0, started + BUSY_ROUND_S - time.monotonic()))

    def _unknown(self, queue: str) -> bool:
        return not (self.fixed_queues or queue in self.queues or queue in self._not_queues)

    async def _keyspace_loop(self, client: Redis, counts: Redis) -> None:
        db = int(counts.connection_pool.connection_kwargs.get("db", 0))
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self.backend.keyspace_pattern(db))
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                if self.mode is Mode.POLLING:  # notifications were unknown: they are on
                    self.mode = Mode.LIVE
                    self._publish()
                queue = self.backend.queue_of_channel(str(message.get("channel", "")))
                if queue is not None:
                    if self._unknown(queue):  # checked on its own at once, no SCAN
                        self._hinted.add(queue)
                        self._rediscover.set()
                    self._dirty.set()
        except ResponseError:  # PSUBSCRIBE refused (an ACL without it): the counts poll on
            self.mode = Mode.POLLING
            self._publish()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
