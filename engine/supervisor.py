"""``corral worker ... --supervise``: keep one worker process running, restarting it.

The supervisor runs the same ``corral worker`` command without ``--supervise`` as a child and
waits for it. When the child exits because a guard recycled it (status 4), a new one starts at
once; when it crashes or is killed, a new one starts after a back-off (1 s doubling to 30 s,
back to 1 s once a child has run for a minute). A child that exits with status 2 (bad processor
or configuration) is not restarted: the supervisor exits with 2 too.

Each child gets ``CORRAL_WORKER_RESTARTS`` = how many children ran before it, and writes it in
its heartbeat (``restarts``), so a dashboard can show how often a worker was recycled. On Linux
a child is killed if the supervisor dies.

SIGTERM/SIGINT are passed on to the child (a second one too, meaning "hand back now"); the
supervisor then waits for it and exits with its status. The child runs in its own session, so a
Ctrl-C in the terminal reaches it once, through the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from .pdeathsig import die_with_parent

log = logging.getLogger("corral.supervisor")

RESTARTS_ENV = "CORRAL_WORKER_RESTARTS"
EXIT_USAGE = 2
EXIT_RECYCLED = 4
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0  # seconds a child must run for the crash back-off to start over


def restarts_from_env() -> int:
    """The restart count a supervisor gave this process (0 when not supervised)."""
    try:
        return max(0, int(os.environ.get(RESTARTS_ENV, "0")))
    except ValueError:
        return 0


def child_command(argv: Sequence[str]) -> list[str]:
    """``python -m corral <argv>`` without ``--supervise``."""
    return [sys.executable, "-m", "corral", *(a for a in argv if a != "--supervise")]


class Supervisor:
    """Runs ``command`` again and again until a signal or a usage error stops it."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self.restarts = 0
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    def run(self) -> int:
        """Supervise until stopped; return the last child's exit status."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self) -> int:
        backoff = BACKOFF_FIRST
        while True:
            env = {**os.environ, RESTARTS_ENV: str(self.restarts)}
            started = time.monotonic()
            self._child = subprocess.Popen(
                self.command, env=env, start_new_session=True, preexec_fn=die_with_parent
            )
            log.info("supervisor: worker process %d started", self._child.pid)
            status = self._child.wait()
            ran = time.monotonic() - started
            if self._stop.is_set() or status == EXIT_USAGE:
                return status
            if status == EXIT_RECYCLED:
                delay = 0.0
                log.info("supervisor: worker %d recycled itself; restarting", self._child.pid)
            else:
                backoff = BACKOFF_FIRST if ran >= STABLE_AFTER else backoff
                delay, backoff = backoff, min(backoff * 2, BACKOFF_CAP)
                log.warning(
                    "supervisor: worker %d exited with status %d; restarting in %.0f s",
                    self._child.pid,
                    status,
                    delay,
                )
            self.restarts += 1
            if self._stop.wait(delay):
                return status


def supervise(argv: Sequence[str]) -> int:
    """Entry point of ``corral worker --supervise`` (``argv`` as given to ``corral``)."""
    return Supervisor(child_command(argv)).run()
