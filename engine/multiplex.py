"""One connection shared by many concurrent calls, pipelined: the worker's per-job scripts.

redis-py's asyncio client lends each concurrent call a connection of its own from a pool and
does, per call, a pool checkout, a health check, a timeout wrapper and a socket write. A worker
makes a few script calls per job, so that bookkeeping costs more than the server's work.
``MultiplexedConnection`` writes every call on one connection as soon as it is made and reads
the replies back in order with hiredis (Redis answers a connection's commands in order), the
way ioredis does for Node. Calls made in the same turn of the event loop leave in one write.

It speaks plain TCP and unix sockets, with the client's user, password, database and client
name; a TLS client keeps the pooled path (``for_client`` returns None). Errors are the ones
redis-py raises (its own error table maps the replies), so callers handle both paths alike: a
lost or silent connection fails every call in flight with ``ConnectionError`` /
``TimeoutError`` and the next call connects again. So does a reply saying the server is a
replica now (``READONLY`` after a failover): the connection is dropped, and a new one goes to
the configured address, where the new primary may be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, cast

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError, NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .connection import NOT_PRIMARY_ERRORS

DEFAULT_REPLY_TIMEOUT = 10.0  # s with calls in flight and no byte back: the link is dead
_RETRIED: tuple[type[Exception], ...] = (ConnectionError, RedisTimeoutError, *NOT_PRIMARY_ERRORS)
"""Errors after which ``evalsha`` retries on a new connection, as the client's pool does."""
_FLUSH_ABOVE = 1 << 16  # bytes buffered in the transport before a call waits for the socket


def _pack(args: Sequence[str | int | float | bytes]) -> bytes:
    """One command in RESP: ``*<n>`` then ``$<len>`` and the bytes of every argument."""
    return b"*%d\r\n%s" % (len(args), _bulk(args))


def _bulk(args: Iterable[str | int | float | bytes]) -> bytes:
    parts = []
    for arg in args:
        data = (
            arg.encode() if type(arg) is str else arg if type(arg) is bytes else str(arg).encode()
        )
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@lru_cache(maxsize=512)
def _script_head(sha: str, keys: tuple[str, ...]) -> bytes:
    """``EVALSHA sha numkeys keys...`` packed, the same for every call of a script on a queue."""
    return _bulk(("EVALSHA", sha, len(keys), *keys))


def _pack_evalsha(sha: str, keys: Sequence[str], args: Sequence[Any]) -> bytes:
    head = _script_head(sha, tuple(keys))
    return b"*%d\r\n%s%s" % (3 + len(keys) + len(args), head, _bulk(args))


class _Protocol(asyncio.Protocol):
    """Matches replies to waiting calls, in order."""

    def __init__(self, encoding: str, errors: str) -> None:
        self.reader = hiredis.Reader(encoding=encoding, errors=errors)
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.demoted = False  # the server answered as a replica: connect again, afresh
        self.retired = False  # replaced after a demotion: closes when its last reply is read
        self.last_reply = 0.0
        self._paused: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (asyncio's, or uvloop's, which is not an asyncio.Transport)
        self.transport = cast(asyncio.Transport, transport)
        self.last_reply = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        self.last_reply = asyncio.get_running_loop().time()
        while self.waiters:
            try:
                reply = self.reader.gets()
            except Exception as exc:  # the stream cannot be read on from here
                self.fail(ConnectionError(f"unreadable reply from Redis: {exc}"))
                return
            if reply is False:
                return
            waiter = self.waiters.popleft()
            if waiter.done():
                continue  # its caller gave up; the reply still had to be read
            if isinstance(reply, hiredis.ReplyError):
                error = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
                self.demoted = self.demoted or isinstance(error, NOT_PRIMARY_ERRORS)
                waiter.set_exception(error)
            else:
                waiter.set_result(reply)
        if self.retired and not self.waiters:
            self.fail(ConnectionError("closed: the server is a replica now"))

    def retire(self, reply_timeout: float) -> None:
        """Close once the calls in flight have their replies (no new call is written), or
        fail them after ``reply_timeout`` s."""
        self.retired = True
        if not self.waiters:
            self.fail(ConnectionError("closed: the server is a replica now"))
            return
        error = RedisTimeoutError(f"no reply from Redis for {reply_timeout:g} s")
        asyncio.get_running_loop().call_later(reply_timeout, self.fail, error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    def fail(self, error: Exception) -> None:
        """Fail every call in flight with ``error`` and close the transport."""
        if self.lost is None:
            self.lost = error
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if self._paused is not None and not self._paused.done():
            self._paused.set_result(None)
        if self.transport is not None:
            self.transport.abort()

    def pause_writing(self) -> None:
        self._paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._paused is not None and not self._paused.done():
            self._paused.set_result(None)
        self._paused = None

    async def writable(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._paused is not None:
            await self._paused


class MultiplexedConnection:
    """A lazily opened, shared, pipelined connection to the server ``client`` talks to."""

    def __init__(
        self,
        kwargs: dict[str, Any],
        *,
        unix: bool,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self._kwargs = kwargs
        self._on_open = on_open
        self._unix = unix
        self._reply_timeout = reply_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._retired: list[_Protocol] = []  # demoted connections with calls still in flight
        self._closed = False

    @classmethod
    def for_client(
        cls,
        client: Redis,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT,
        on_open: Callable[[], None] | None = None,
    ) -> MultiplexedConnection | None:
        """A multiplexed connection like ``client``'s, or None for TLS (or unknown) clients;
        ``on_open`` is called after each new connection's handshake (as the pool's
        ``redis_connect_func`` is)."""
        pool = client.connection_pool
        kind = pool.connection_class
        if kind not in (Connection, UnixDomainSocketConnection):
            return None
        return cls(
            dict(pool.connection_kwargs),
            unix=kind is UnixDomainSocketConnection,
            reply_timeout=reply_timeout,
            on_open=on_open,
        )

    async def execute(self, *args: str | int | float | bytes) -> Any:
        """Send one command and return its reply (a redis-py error for an error reply)."""
        return await self._send(await self._connected(), _pack(args))

    async def evalsha(self, sha: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by its SHA, loading it first if the server does not have it. A lost or
        silent connection, or a server that is a replica now, is retried as the client's pool
        retries (see ``_retried``)."""
        packed = _pack_evalsha(sha, keys, args)
        try:
            return await self._evalsha_once(source, packed)
        except _RETRIED as exc:
            return await self._retried(exc, lambda: self._evalsha_once(source, packed))

    async def _evalsha_once(self, source: str, packed: bytes) -> Any:
        try:
            return await self._send(await self._connected(), packed)
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", source)
            return await self._send(await self._connected(), packed)

    async def evalsha_many(
        self, calls: Sequence[tuple[str, str, Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run each ``(sha, source, keys, args)`` script call of ``calls``, all written at
        once, and return the replies in order (like a pipeline: each call is atomic, the batch
        is not). Calls refused with NOSCRIPT run again once their script is loaded; calls a
        replica refused (``READONLY`` after a failover: they never ran) run again on a new
        connection, retried as ``evalsha`` is; then the first error reply is raised. A lost
        connection is not retried: it raises ``ConnectionError``, and the calls before it may
        have run."""
        packed = [_pack_evalsha(sha, keys, args) for sha, _, keys, args in calls]
        replies = await self._run_many(calls, packed, range(len(calls)))

        def first_refusal() -> Exception | None:
            return next((r for r in replies if isinstance(r, NOT_PRIMARY_ERRORS)), None)

        async def resend_refused() -> None:
            """Send the refused calls again; raise the refusal while any is refused still."""
            refused = [
                i for i, reply in enumerate(replies) if isinstance(reply, NOT_PRIMARY_ERRORS)
            ]
            for i, reply in zip(refused, await self._run_many(calls, packed, refused), strict=True):
                replies[i] = reply
            if (refusal := first_refusal()) is not None:
                raise refusal

        if (refusal := first_refusal()) is not None:
            with contextlib.suppress(*NOT_PRIMARY_ERRORS):  # still refused: raised below
                await self._retried(refusal, resend_refused)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _run_many(
        self,
        calls: Sequence[tuple[str, str, Sequence[str], Sequence[Any]]],
        packed: Sequence[bytes],
        which: Iterable[int],
    ) -> list[Any]:
        """Send the calls numbered ``which`` at once; their replies (errors as values), those
        refused with NOSCRIPT sent again once their scripts are loaded."""
        which = list(which)
        replies = await self._gather([packed[i] for i in which])
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for source in {calls[which[n]][1] for n in missing}:
                await self.execute("SCRIPT", "LOAD", source)
            again = await self._gather([packed[which[n]] for n in missing])
            for n, reply in zip(missing, again, strict=True):
                replies[n] = reply
        return replies

    async def ensure_connected(self) -> None:
        """Connect now if not connected (``on_open`` runs for a new connection)."""
        await self._connected()

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is None or not _usable(protocol):
            protocol = await self._connect()
        return protocol

    async def _gather(self, packed: Sequence[bytes]) -> list[Any]:
        waiters = self._write(await self._connected(), b"".join(packed), len(packed))
        return list(await asyncio.gather(*waiters, return_exceptions=True))

    async def _retried(self, first: Exception, call: Callable[[], Awaitable[Any]]) -> Any:
        """Retry ``call`` after a lost or silent connection with the backoff and number of
        retries of the client's pool: the same at-least-once behaviour (a call whose reply was
        lost may have run)."""
        retry = self._kwargs.get("retry")
        if retry is None or self._closed:
            raise first
        backoff = getattr(retry, "_backoff", None)
        error = first
        for attempt in range(1, int(retry.get_retries()) + 1):
            await asyncio.sleep(backoff.compute(attempt) if backoff is not None else 0)
            try:
                return await call()
            except _RETRIED as exc:
                error = exc
        raise error

    def drop_if_idle(self) -> bool:
        """Drop the connection if no call is in flight (the next call connects again), as
        when another connection to the server went silent; True if it was dropped."""
        protocol = self._protocol
        if protocol is None or protocol.lost is not None or protocol.waiters:
            return False
        protocol.fail(ConnectionError("dropped: another connection to Redis went silent"))
        return True

    async def aclose(self) -> None:
        """Close the connection; calls in flight fail with ``ConnectionError``."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for protocol in [*self._retired, self._protocol]:
            if protocol is not None:
                protocol.fail(ConnectionError("connection closed"))
        self._protocol = None
        self._retired = []

    async def _send(self, protocol: _Protocol, packed: bytes) -> Any:
        (waiter,) = self._write(protocol, packed, 1)
        transport = protocol.transport
        if transport is not None and transport.get_write_buffer_size() > _FLUSH_ABOVE:
            await protocol.writable()
        return await waiter

    def _write(self, protocol: _Protocol, packed: bytes, replies: int) -> list[asyncio.Future[Any]]:
        """Write ``packed`` (``replies`` commands) and return a future for each reply."""
        transport = protocol.transport
        if transport is None or protocol.lost is not None:
            raise protocol.lost or ConnectionError("not connected to Redis")
        loop = asyncio.get_running_loop()
        if not protocol.waiters:
            protocol.last_reply = loop.time()  # the clock runs from the first call in flight
        waiters: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(replies)]
        protocol.waiters.extend(waiters)
        transport.write(packed)
        if self._watchdog is None:
            self._watchdog = loop.call_later(self._reply_timeout / 4, self._check_replies)
        return waiters

    def _check_replies(self) -> None:
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or not protocol.waiters or protocol.lost is not None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - protocol.last_reply > self._reply_timeout:
            protocol.fail(
                RedisTimeoutError(
                    f"no reply from Redis for {self._reply_timeout:g} s; reconnecting"
                )
            )
            return
        self._watchdog = loop.call_later(self._reply_timeout / 4, self._check_replies)

    async def _connect(self) -> _Protocol:
        if self._closed:
            raise ConnectionError("connection closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            old = self._protocol
            if old is not None and _usable(old):
                return old
            if old is not None and old.lost is None:  # demoted: its calls get their replies
                old.retire(self._reply_timeout)
                self._retired = [p for p in self._retired if p.lost is None] + [old]
            protocol = await self._open()
            self._protocol = protocol
            if self._on_open is not None:
                self._on_open()
            return protocol

    async def _open(self) -> _Protocol:
        kw = self._kwargs
        loop = asyncio.get_running_loop()

        def factory() -> _Protocol:
            return _Protocol(kw.get("encoding", "utf-8"), kw.get("encoding_errors", "strict"))

        timeout = kw.get("socket_connect_timeout") or 5.0
        try:
            async with asyncio.timeout(timeout):
                if self._unix:
                    _, protocol = await loop.create_unix_connection(factory, kw["path"])
                else:
                    _, protocol = await loop.create_connection(
                        factory, kw.get("host", "localhost"), int(kw.get("port", 6379))
                    )
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"cannot connect to Redis: {exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                await self._handshake(protocol)
        except TimeoutError as exc:
            protocol.fail(ConnectionError("handshake timed out"))
            raise ConnectionError(f"no answer from Redis within {timeout:g} s") from exc
        except BaseException:
            protocol.fail(ConnectionError("handshake failed"))
            raise
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        kw = self._kwargs
        steps: list[tuple[Any, ...]] = []
        if kw.get("password"):
            user = kw.get("username")
            steps.append(("AUTH", user, kw["password"]) if user else ("AUTH", kw["password"]))
        if kw.get("client_name"):
            steps.append(("CLIENT", "SETNAME", kw["client_name"]))
        if int(kw.get("db") or 0):
            steps.append(("SELECT", int(kw["db"])))
        for step in steps:
            await self._send(protocol, _pack(step))


def _usable(protocol: _Protocol | None) -> bool:
    """True for a connection that is open and not known to lead to a replica."""
    return protocol is not None and protocol.lost is None and not protocol.demoted


async def close_quietly(connection: MultiplexedConnection | None) -> None:
    """Close ``connection`` if there is one, ignoring errors."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await connection.aclose()
