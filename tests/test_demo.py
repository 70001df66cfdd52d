"""``corral demo --no-dash`` as a real process: it prints its URL, jobs flow on that server, and
SIGINT (or ``--duration``) ends it with every process it started gone, checked in ``/proc``; the
server's URL reaches its processes in their environment, never on a command line."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from support.server import FaultServer

from engine.keys import QueueKeys

pytestmark = pytest.mark.timeout(60)

PASSWORD = "demo-secret-pw-7f3a"


@dataclass(frozen=True, slots=True)
class Proc:
    """One process as ``/proc/<pid>/stat`` describes it."""

    pid: int
    ppid: int
    pgrp: int
    state: str
    started: int
    """Start time in clock ticks since boot: tells a pid from a later one that reuses it."""


def _proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (or never there)
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))


def _all() -> list[Proc]:
    procs = (_proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in procs if p is not None]


def descendants(root: int) -> list[Proc]:
    """Every process below ``root`` (children, their children ...), as running now."""
    procs = _all()
    found: list[Proc] = []
    parents = {root}
    while True:
        below = [p for p in procs if p.ppid in parents and p not in found]
        if not below:
            return found
        found.extend(below)
        parents = {p.pid for p in below}


def running(proc: Proc) -> bool:
    """The same process (not a later one with its pid) is still there, and not a zombie."""
    now = _proc(proc.pid)
    return now is not None and now.started == proc.started and now.state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def demo(env: dict[str, str], *args: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``corral demo --no-dash`` running; killed with what it started if the test fails."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "corral", "demo", "--no-dash", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, so it can be checked
        )
    seen: list[Proc] = []
    try:
        yield proc
    finally:
        if proc.poll() is None:
            seen = descendants(proc.pid)
            proc.kill()
            proc.wait(10)
        for child in seen:
            with contextlib.suppress(ProcessLookupError):
                if running(child):
                    os.kill(child.pid, signal.SIGKILL)
        assert proc.stdout is not None
        proc.stdout.close()


def first_line(proc: subprocess.Popen[bytes], within: float = 20.0) -> str:
    """The first line the demo prints (its URL)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], within)
    assert ready, "the demo printed no URL"
    return proc.stdout.readline().decode().strip()


def wait_for_jobs(url: str, within: float = 20.0) -> int:
    """Completed emails on the server, once there are some."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    counters = QueueKeys("emails").counters
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            done = int(client.hget(counters, "completed") or 0)
            if done > 0:
                return done
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError("no job completed")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return {**env, **extra}


def _children_hold_no_url(procs: list[Proc], *secrets: str) -> None:
    assert procs
    for proc in procs:
        line = cmdline(proc.pid)
        assert not any(secret in line for secret in secrets), line


def test_sigint_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    with demo(_env(), log=tmp_path / "demo.log") as proc:
        url = first_line(proc)
        port = urlsplit(url).port
        assert url.startswith("redis://127.0.0.1:") and port is not None
        assert port != 6379  # its own server: nothing is asked of a server on the default port
        assert wait_for_jobs(url) > 0
        started = descendants(proc.pid)
        # the server, the producer and one worker per queue
        assert len(started) >= 6, [cmdline(p.pid) for p in started]
        _children_hold_no_url(started, url)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    left = [cmdline(p.pid) or str(p.pid) for p in started if running(p)]
    assert not left, f"still running after the demo ended: {left}"
    group = [p.pid for p in _all() if p.pgrp == proc.pid and running(p)]
    assert not group, f"processes left in the demo's process group: {group}"
    assert not port_open(port)


def test_a_configured_server_is_used_and_its_password_never_shown(
    fresh_server: FaultServer, tmp_path: Path
) -> None:
    fresh_server.config_set("requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{fresh_server.port}/0"
    with demo(_env(REDIS_URL=url), "--duration", "3", log=tmp_path / "demo.log") as proc:
        assert first_line(proc) == f"redis://:***@127.0.0.1:{fresh_server.port}/0"
        assert wait_for_jobs(url) > 0  # on the server named in REDIS_URL
        started = descendants(proc.pid)
        assert len(started) >= 5  # the producer and the workers: no server of its own
        _children_hold_no_url(started, PASSWORD, url)
        assert proc.wait(20) == 0  # --duration: it ends by itself
    assert not [p.pid for p in started if running(p)]
    assert fresh_server.ping() or port_open(fresh_server.port)  # ours: still running
    assert PASSWORD not in (tmp_path / "demo.log").read_text()
