"""Measuring how clients behave while their server is down (R1, R11).

``AttemptRecorder`` stands in for a dead server: a plain TCP listener on the server's port
that notes every connection attempt (when, and which of the given processes made it) and
resets it at once, so the client sees a connection error right away, as it would from a port
nothing listens on. ``cpu_seconds`` reads a process's CPU time from ``/proc``; ``gaps`` and
``pauses`` turn attempt times into the intervals a backoff schedule is judged by.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["Attempt", "AttemptRecorder", "cpu_seconds", "gaps", "pauses"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connection attempt: when (``time.monotonic()``) and from which process (None if
    none of the watched ones)."""

    at: float
    pid: int | None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far, in seconds (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may hold spaces and parens
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the loopback TCP socket from ``local_port`` to ``remote_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == local_port and int(remote.split(":")[1], 16) == (
            remote_port
        ):
            return inode
    return None


def _owner(inode: str | None, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode`` open."""
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


class AttemptRecorder:
    """Listen on ``127.0.0.1:port`` (where the server was) and record each connection attempt,
    resetting it at once. Use as a context manager, between killing the server and starting it
    again on the same port; ``pids`` are the processes whose attempts are told apart."""

    def __init__(self, port: int, pids: Sequence[int]) -> None:
        self.port = port
        self.pids = list(pids)
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._thread = threading.Thread(target=self._serve, name="attempt-recorder", daemon=True)

    def __enter__(self) -> Self:
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(128)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop listening (the port is free again for the server)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._sock.close()

    def times(self, pid: int) -> list[float]:
        """When process ``pid`` tried to connect (``time.monotonic()``), in order."""
        with self._lock:
            return [a.at for a in self.attempts if a.pid == pid]

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            conn, (_, peer_port) = self._sock.accept()
            at = time.monotonic()
            try:  # the client holds its end open while it waits for a reply: find its owner
                pid = _owner(_socket_inode(peer_port, self.port), self.pids)
            finally:  # then reset it: the client's next read or write fails at once
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            with self._lock:
                self.attempts.append(Attempt(at, pid))


def gaps(times: Sequence[float]) -> list[float]:
    """The intervals between consecutive ``times``."""
    return [b - a for a, b in itertools.pairwise(times)]


def pauses(times: Sequence[float], at_least: float = 0.5) -> list[float]:
    """The gaps of at least ``at_least`` s between consecutive ``times``, in order: a client
    library's own quick retries of one call come closer together, so for a single reconnect
    loop these are its backoff delays."""
    return [gap for gap in gaps(times) if gap >= at_least]
