"""``corral demo``: a realistic workload on a private server, watched in the dashboard.

It starts the embedded server (unless one is configured with ``--redis`` or ``REDIS_URL``: a
server that merely answers on the default address is never used, so the demo's fake jobs cannot
land in, nor its workers take jobs from, a real queue), the producers and one real
``corral worker`` process per queue, kills the reports worker now and then so its long jobs
really stall and get recovered, and opens the dashboard. Leaving the dashboard (or Ctrl-C)
stops every process it started. Child processes get the server URL in their environment
(``REDIS_URL``), never on their command line, where ``ps`` would show its password.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from dashboard.sanitize import mask_url
from engine.keys import DEFAULT_PREFIX
from engine.pdeathsig import stop_with_parent
from engine.server import EmbeddedServer

from .cli import REDIS_URL_ENV
from .demo_producer import EMAILS, REPORTS, THUMBNAILS, WEBHOOKS


@dataclass(frozen=True)
class DemoWorker:
    """One worker process of the demo."""

    queue: str
    target: str
    concurrency: int
    killed_now_and_then: bool = False


WORKERS = (
    DemoWorker(EMAILS, "corral.demo_jobs:send_email", 20),
    DemoWorker(REPORTS, "corral.demo_jobs:build_report", 4, killed_now_and_then=True),
    DemoWorker(WEBHOOKS, "corral.demo_jobs:deliver_webhook", 30),
    DemoWorker(THUMBNAILS, "corral.demo_jobs:make_thumbnail", 4),
)
# short locks, so a killed worker's jobs come back within seconds: 5 s + 2 x 2 s
LOCK_MS, STALLED_MS = 5_000, 2_000


@dataclass
class Workload:
    """The processes of the demo workload; ``stop()`` ends every one of them."""

    url: str
    log: int | None = subprocess.DEVNULL
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    kills: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while a process starts, so none starts once ``stop()`` began (the killer thread
    restarts a worker while the main thread may be stopping everything)."""
    _stopped: bool = False

    def _spawn(self, name: str, args: list[str]) -> None:
        with self._lock:
            if self._stopped:
                return
            self.procs[name] = subprocess.Popen(
                [sys.executable, *args],
                stdout=self.log,
                stderr=self.log,
                stdin=subprocess.DEVNULL,
                env={**os.environ, REDIS_URL_ENV: self.url},  # not in argv: ps shows argv
                start_new_session=True,  # Ctrl-C in the dashboard is ours to handle, not theirs
                preexec_fn=stop_with_parent,  # and if the demo is killed, they go with it
            )

    def _spawn_worker(self, worker: DemoWorker) -> None:
        self._spawn(
            f"worker:{worker.queue}",
            ["-m", "corral", "worker", worker.target, "--queue", worker.queue,
             "--concurrency", str(worker.concurrency),
             "--lock-duration", str(LOCK_MS), "--stalled-interval", str(STALLED_MS),
             "--max-stalled-count", "2", "--shutdown-grace", "3"],
        )  # fmt: skip

    def start(self) -> None:
        """Start the producers, the workers and the worker killer."""
        self._spawn("producer", ["-m", "corral.demo_producer"])
        for worker in WORKERS:
            self._spawn_worker(worker)
        threading.Thread(target=self._kill_now_and_then, name="demo-killer", daemon=True).start()

    def _kill_now_and_then(self) -> None:
        while not self.stopping.wait(random.uniform(25, 50)):
            for worker in WORKERS:
                proc = self.procs.get(f"worker:{worker.queue}")
                if not worker.killed_now_and_then or proc is None:
                    continue
                proc.send_signal(signal.SIGKILL)  # its running reports will stall
                proc.wait()
                self.kills += 1
                if self.stopping.wait(3):
                    return
                self._spawn_worker(worker)

    def stop(self) -> None:
        """Stop everything: SIGTERM, then SIGKILL what is still running after a few seconds."""
        with self._lock:
            self.stopping.set()
            self._stopped = True
            procs = list(self.procs.items())
        for _, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for name, proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                print(f"demo: {name} still running after 5 s: killed", file=sys.stderr)
                proc.kill()
                proc.wait()


def _server_url(args: argparse.Namespace) -> tuple[str, EmbeddedServer | None]:
    """The server configured explicitly (``--redis``, else ``REDIS_URL``); else a private
    embedded one, which the caller must close. Whatever answers on the default address is not
    asked: it may hold real queues."""
    configured = args.redis or os.environ.get(REDIS_URL_ENV)
    if configured:
        return configured, None
    server = EmbeddedServer(notify_keyspace_events="KA").start()  # live view, not polling
    return server.url, server


def run_demo(args: argparse.Namespace) -> int:
    """Entry point of ``corral demo``."""
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C (SIGINT) stops the demo even when it was started with SIGINT ignored, as a
        # shell without job control starts background commands
        signal.signal(signal.SIGINT, signal.default_int_handler)
    url, server = _server_url(args)
    workload = Workload(url)
    try:
        workload.start()
        if args.no_dash:
            print(mask_url(url), flush=True)  # a configured password is never printed
            print("demo workload running; Ctrl-C stops it", file=sys.stderr)
            _wait(args.duration)
            return 0
        dash = argparse.Namespace(
            redis=url, queues=None, prefix=DEFAULT_PREFIX, read_only=False, demo=True
        )
        # imported here: the workload (and --no-dash) needs no terminal UI
        status: int = importlib.import_module("dashboard.cli").run_dash(dash)
        return status
    except KeyboardInterrupt:
        return 0
    finally:
        with _no_interrupts():  # a second Ctrl-C must not leave processes behind
            began = time.monotonic()
            workload.stop()
            if server is not None:
                server.close(timeout=3)  # a private server without persistence: nothing to lose
            if args.no_dash:
                took = time.monotonic() - began
                print(f"demo stopped in {took:.1f} s", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Ignore SIGINT inside the block (only the main thread can; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _wait(duration: float | None) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.2 if deadline is None else min(0.2, max(deadline - time.monotonic(), 0)))
