"""A real terminal for a real program: ``PtyProgram`` runs a command on a pseudo-terminal of a
fixed size, reads everything it draws into a ``pyte`` screen, and tells when the screen first
shows something (the time the bytes that drew it arrived), so the harness measures what a person
would see. It also reads the program's CPU time and resident memory from ``/proc`` (Linux).

``pyte`` comes from ``bench.tools.ensure_tools()``, which must run before ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import termios
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

Predicate = Callable[[list[str]], bool]
"""Gets the screen's lines (plain text); true once what is awaited is shown."""

CLOSE_TIMEOUT = 10.0
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class PtyProgram:
    """One program on a pseudo-terminal of ``columns`` x ``rows``."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int, columns: int, rows: int):
        import pyte  # installed by bench.tools on first use

        self.proc = proc
        self.pid = proc.pid
        self._master = master
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self.screen)
        self.emulate = True
        """False: read and drop the output (no emulator work in the harness while the program's
        own CPU is measured)."""
        self.bytes_read = 0
        self._waiters: list[tuple[Predicate, asyncio.Future[float]]] = []
        self._closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._on_readable)

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        columns: int = 80,
        rows: int = 24,
    ) -> Self:
        """Start ``argv`` as the session leader of a new terminal of that size."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.set_blocking(master, False)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env={**os.environ, "TERM": "xterm-256color", **(env or {})},
                stdin=slave,
                stdout=slave,
                stderr=slave,
                preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return cls(proc, master, columns, rows)

    # -- the screen --------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """The screen now, one plain-text string per row."""
        return list(self.screen.display)

    def text(self) -> str:
        """The screen now as one string (for messages)."""
        return "\n".join(line.rstrip() for line in self.lines())

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 1 << 16)
        except BlockingIOError:
            return
        except OSError:  # EIO: the program closed the terminal (it exited)
            data = b""
        arrived = time.perf_counter()
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._closed.set()
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(EOFError("the program closed its terminal"))
            self._waiters.clear()
            return
        self.bytes_read += len(data)
        if not self.emulate:
            return
        self._stream.feed(data)
        if self._waiters:
            self._check_waiters(arrived)

    def _check_waiters(self, arrived: float) -> None:
        lines = self.lines()
        still = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            if predicate(lines):
                future.set_result(arrived)
            else:
                still.append((predicate, future))
        self._waiters = still

    async def wait_for(self, predicate: Predicate, within: float, what: str = "") -> float:
        """Wait until the screen satisfies ``predicate``; return the ``perf_counter`` time the
        output that made it so arrived (now, if it holds already). ``TimeoutError`` names
        ``what`` and shows the screen."""
        if predicate(self.lines()):
            return time.perf_counter()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            raise TimeoutError(
                f"the screen did not show {what or 'what was awaited'} within {within}s:\n"
                + self.text()
            ) from None
        except EOFError:
            raise EOFError(
                f"the program closed its terminal before it showed {what or 'what was awaited'}"
                f" (exit status {await self._exit_status()}):\n{self.text()}"
            ) from None

    async def _exit_status(self) -> int | None:
        """The program's exit status, waiting a little for it (None if it is still running)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 2.0)
        return self.proc.returncode

    def send(self, keys: str) -> None:
        """Type ``keys`` (``"\\r"`` is Enter)."""
        os.write(self._master, keys.encode())

    # -- the process -------------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """User + system CPU the program has used (all its threads)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND

    def rss_bytes(self) -> int:
        """Resident memory now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    async def close(self, keys: str = "\x03") -> None:
        """Ask the program to quit by typing ``keys`` (ctrl+c); terminate, then kill it if it
        does not; release the terminal."""
        if self.proc.returncode is None:
            with contextlib.suppress(OSError):
                self.send(keys)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), CLOSE_TIMEOUT)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.returncode is not None:
                break
            self.proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), CLOSE_TIMEOUT)
        if not self._closed.is_set():
            asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def _take_terminal() -> None:
    """In the child: lead a new session whose controlling terminal is the pty on stdin."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
