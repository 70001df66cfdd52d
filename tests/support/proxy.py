"""``FaultProxy``: a TCP proxy between one client and the server, with faults switched at run time.

It runs its own asyncio loop in a thread, so it keeps forwarding while the test's loop is busy
(or blocked), and worker subprocesses can be pointed at ``proxy.url``. No root needed.

Faults, each switchable from the test at any time:

- ``latency(ms, jitter_ms)``: every chunk is delivered ``ms`` (+ up to ``jitter_ms``) late, in
  order, without limiting throughput (chunks in flight overlap).
- ``blackhole()`` / ``heal()``: a partition. Connections, old and new, are accepted and kept
  open but nothing is forwarded either way; bytes sent meanwhile are held, as TCP would hold
  them in retransmission, and delivered on ``heal()`` (to a client that has not given up).
- ``freeze_existing()``: the open connections go silent forever (half-open: the peer's state is
  gone, no FIN, no RST), while new connections work. Only the client's own timeouts notice.
- ``reset()``: close every open connection with RST (``SO_LINGER 0``); new ones work.
- ``refuse()`` / ``accept()``: stop listening (connects get ECONNREFUSED) and listen again on
  the same port. ``refuse(reset_open=True)`` also resets the open connections.
- ``retarget(port)``: new connections go to another server (as a failover moves the address
  clients are configured with); the open ones stay linked to the server they were made to.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self, TypeVar

HOST: Final = "127.0.0.1"
CHUNK: Final = 65_536

T = TypeVar("T")


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side and the server side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    flowing: asyncio.Event
    frozen_forever: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """``with FaultProxy(server.port) as proxy:`` then connect clients to ``proxy.url``."""

    def __init__(self, target_port: int, target_host: str = HOST, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._requested_port = port
        self._port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._partitioned = False
        self._latency = (0.0, 0.0)
        self.accepted = 0
        """Connections accepted so far."""
        self.accept_times: list[float] = []
        """When (``time.monotonic()``) each connection was accepted."""

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the loop thread and listen on 127.0.0.1 (a free port unless one was given)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        """Reset every connection, stop listening and stop the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` through the proxy."""
        return f"redis://{HOST}:{self._port}/0"

    @property
    def open_connections(self) -> int:
        """Connections currently proxied."""
        return len(self._links)

    # -- faults (call from any thread) --------------------------------------------------------

    def latency(self, ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every chunk by ``ms`` plus a random share of ``jitter_ms`` (0 turns it off)."""
        self._latency = (ms / 1000, jitter_ms / 1000)

    def blackhole(self) -> None:
        """Partition: stop forwarding on every connection, old and new, until ``heal()``."""
        self._run(self._set_partition, True)

    def heal(self) -> None:
        """End the partition (and the latency); held bytes are delivered."""
        self._latency = (0.0, 0.0)
        self._run(self._set_partition, False)

    def freeze_existing(self) -> int:
        """Make every open connection silent for good (half-open); return how many."""
        return self._run(self._freeze_existing)

    def reset(self) -> int:
        """Close every open connection with RST; return how many."""
        return self._run(self._reset_all)

    def refuse(self, reset_open: bool = False) -> None:
        """Stop listening, so new connections are refused; optionally reset the open ones."""
        self._call(self._stop_listening())
        if reset_open:
            self.reset()

    def accept(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def retarget(self, port: int, host: str = HOST) -> None:
        """Link the connections accepted from now on to ``host:port``; the open ones keep
        their server."""
        self._run(setattr, self, "target", (host, port))

    # -- inside the loop thread ----------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return self._call(call())

    async def _listen(self) -> None:
        if self._server is not None:
            return
        port = self._port or self._requested_port
        self._server = await asyncio.start_server(self._handle, HOST, port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _shutdown(self) -> None:
        await self._stop_listening()
        self._reset_all()
        await asyncio.sleep(0)

    def _set_partition(self, on: bool) -> None:
        self._partitioned = on
        for link in self._links:
            if link.frozen_forever:
                continue
            if on:
                link.flowing.clear()
            else:
                link.flowing.set()

    def _freeze_existing(self) -> int:
        for link in self._links:
            link.frozen_forever = True
            link.flowing.clear()
        return len(self._links)

    def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link, rst=True)
        return len(links)

    def _drop(self, link: _Link, rst: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        for writer in (link.client, link.upstream):
            if rst:
                _abort_with_rst(writer)
            else:
                writer.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.accept_times.append(time.monotonic())
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort_with_rst(writer)
            return
        flowing = asyncio.Event()
        if not self._partitioned:
            flowing.set()
        link = _Link(writer, up_writer, flowing)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer)),
            asyncio.create_task(self._pump(link, up_reader, writer)),
        ]

    async def _pump(
        self, link: _Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        """Copy one direction through a delivery queue that applies latency and the gate."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliverer = asyncio.create_task(self._deliver(link, chunks, sink))
        last_due = 0.0
        try:
            while True:
                data = await source.read(CHUNK)
                delay, jitter = self._latency
                due = time.monotonic() + delay + random.uniform(0, jitter)
                last_due = max(last_due, due)
                await chunks.put((last_due, data))  # b"" (end of stream) is delivered last
                if not data:
                    break
            await deliverer  # everything read is delivered before the link closes
        except OSError:
            pass  # a side went away: close the link
        finally:
            deliverer.cancel()
            self._drop(link, rst=False)

    async def _deliver(
        self, link: _Link, chunks: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter
    ) -> None:
        while True:
            due, data = await chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await link.flowing.wait()
            if not data:
                return
            sink.write(data)
            await sink.drain()
