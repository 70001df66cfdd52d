"""The server dies, restarts, drops clients or is absent (R1, R2, R10, R11, S4), with real
worker processes, the execution ledger and the invariant checker."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.invariants import assert_invariants
from support.ledger import read_ledger
from support.outage import AttemptRecorder, cpu_seconds, gaps, pauses
from support.server import FaultServer, ServerFactory
from support.streams import stream_events
from support.workers import WorkerProcess, wait_until

from engine import JobState, Queue

LEDGER_JOB = "support.jobs:ledger_job"


def _starts(ledger: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in read_ledger(ledger):
        if line["kind"] == "start":
            out[str(line["job_id"])] = out.get(str(line["job_id"]), 0) + 1
    return out


async def _completed(queue: Queue, n: int) -> bool:
    try:
        return (await queue.get_totals())[0] >= n
    except (OSError, ConnectionError, aioredis.ConnectionError):
        return False


OUTAGE = 10.0  # seconds the server stays down in R1
WORKER_STATE_CHANGES = ("lost Redis", "lock renewal failed", "cannot record job")
"""What a worker may log once each when the server goes away with a job in flight."""


@dataclass(frozen=True, slots=True)
class _Add:
    started: float  # time.monotonic()
    took: float
    job_id: str | None
    error: BaseException | None


class _Producer:
    """A producer that stays up: from ``start()`` to ``stop()`` it adds a job every ``every``
    s, noting each outcome; an error does not end its loop."""

    def __init__(self, queue: Queue, every: float) -> None:
        self.adds: list[_Add] = []
        self._queue = queue
        self._every = every
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    def added(self) -> list[_Add]:
        """The adds that succeeded."""
        return [a for a in self.adds if a.job_id is not None]

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                job = await self._queue.add("produced", {"n": n})
            except Exception as exc:  # the test checks every error's type
                self.adds.append(_Add(started, time.monotonic() - started, None, exc))
            else:
                self.adds.append(_Add(started, time.monotonic() - started, job.id, None))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._every)


CAP = 20.0  # seconds between reconnect attempts, at most
TIMER_SLACK = 0.5  # seconds a timer of a busy, shared core may fire late
SETTLE = 4.0
"""Seconds from the start of an outage by which the calls each loop had in flight have failed
(redis-py retries each on new connections, with pauses of up to 0.4 s); from then on only the
worker's probe tries the server."""
STARTING_SETTLE = 2.0
"""The same for a worker that starts without a server: its first check fails within about a
second, and its probe's pauses (0.1 s doubling) are 1.6 s long from 1.5 s in."""


def _backoff_report(tries: list[float], window: float, settle: float = SETTLE) -> str:
    early = sum(1 for t in tries if t < window / 2)
    later = [round(t, 2) for t in tries if t >= settle]
    return (
        f"{len(tries)} connection attempts ({early} in the first half of {window:.1f} s, "
        f"{len(tries) - early} in the second), the first {tries[0]:.3f} s in, the second "
        f"{tries[1]:.3f} s in, the last {tries[-1]:.2f} s in; longest gap "
        f"{max(gaps(tries)):.2f} s; pauses of 0.5 s or more: "
        f"{[round(p, 2) for p in pauses(tries)]}; {settle:g} s in and later: {later}"
    )


def _assert_backs_off(tries: list[float], window: float) -> None:
    """``tries`` (seconds from the start of an outage lasting ``window`` s): the first within
    0.5 s, then fewer and fewer (the second half of the window holds at most half as many as
    the first: a fixed-rate retry loop holds as many), never more than 20 s apart."""
    assert len(tries) >= 2, f"{len(tries)} reconnect attempt(s)"
    report = _backoff_report(tries, window)
    assert tries[0] <= 0.5, report
    assert max(gaps([0.0, *tries, window])) <= CAP + TIMER_SLACK, report
    early = sum(1 for t in tries if t < window / 2)
    assert (len(tries) - early) * 2 <= early, report


def _assert_one_try_per_step(tries: list[float], window: float, settle: float = SETTLE) -> None:
    """From ``settle`` s into the outage on, one connection attempt per backoff step: every
    pause between two attempts at least twice the one before it (up to the cap), none over
    the cap. A worker whose loops each retried on their own, or whose tries were each retried
    by redis-py, would make several attempts per step, a fraction of a second apart."""
    report = _backoff_report(tries, window, settle)
    steps = gaps([t for t in tries if t >= settle])
    assert all(step >= 1.5 for step in steps), report  # 0.1 s doubling: 1.6 s by 3.1 s in
    for before, after in itertools.pairwise(steps):
        assert after >= min(1.8 * before, CAP - TIMER_SLACK), report
    assert max([0.0, *steps]) <= CAP + TIMER_SLACK, report


@pytest.mark.timeout(90)
async def test_r1_server_without_persistence_killed_and_restarted_empty(
    fresh_server: FaultServer,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """R1: the server dies mid-job and comes back empty 10 s later, while a producer keeps
    adding. Meanwhile the worker (a real ``corral worker``) retries with exponential backoff
    (first attempt within 0.5 s, then thinning out, never 20 s apart; counted by a listener
    on the dead server's port), uses under 5 % of a core, and logs each state change once. The
    producer gets connection errors within 2 s per add instead of hanging. After the restart
    the worker says once that the dataset was reset, drops the vanished job's result with a
    clear message instead of crashing, and runs the jobs added since, the first within 2 s plus
    the backoff delay it had reached (capped)."""
    caplog.set_level(logging.INFO, logger="corral")
    url, ledger, log_file = fresh_server.url, tmp_path / "ledger.jsonl", tmp_path / "worker.log"
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, log_file=log_file)
    procs.append(worker)
    pid = worker.proc.pid
    async with Queue(queue_name, url) as queue:
        job = await queue.add("in-flight", {"sleep": 2.0})  # finishes during the outage
        await wait_until(lambda: _state_is(queue, job.id, JobState.ACTIVE), within=20)
        # the producer has been adding: it knows the queue (delayed, so no worker takes it)
        await queue.add("before", {}, delay=60_000)
        producer = _Producer(queue, every=0.25)
        try:
            fresh_server.kill()
            killed_at, cpu_before = time.monotonic(), cpu_seconds(pid)
            logged_before, records_before = log_file.stat().st_size, len(caplog.records)
            with AttemptRecorder(fresh_server.port, [pid, os.getpid()]) as recorder:
                producer.start()  # every add from now on is for the server after the restart
                await asyncio.sleep(OUTAGE)
            back_at = time.monotonic()
            outage = back_at - killed_at
            cpu_share = (cpu_seconds(pid) - cpu_before) / outage
            worker_lines = log_file.read_bytes()[logged_before:].decode().splitlines()
            producer_lines = [r.getMessage() for r in caplog.records[records_before:]]
            await asyncio.to_thread(fresh_server.restart)
            restarted_at = time.monotonic()

            async def three_added() -> bool:
                return len(producer.added()) >= 3

            await wait_until(three_added, within=10)
            first = producer.added()[0]
            first_id = first.job_id
            assert first_id is not None
            await wait_until(lambda: _state_is(queue, first_id, JobState.COMPLETED), within=30)
            latency = time.monotonic() - (first.started + first.took)
        finally:
            await producer.stop()
        produced = producer.added()
        await wait_until(lambda: _completed(queue, len(produced)), within=30)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        log = worker.output()

        tries = [t - killed_at for t in recorder.times(pid)]
        failed = [a for a in producer.adds if a.error is not None]
        print(  # the measured values, for the record (pytest -s or -rP shows them)
            f"\nR1 worker: {_backoff_report(tries, outage)}; CPU {cpu_share:.2%} of a core over "
            f"{outage:.1f} s; {len(worker_lines)} log line(s) during the outage; first job "
            f"after the restart done {latency:.2f} s after its add\n"
            f"R1 producer: {len(failed)} failed add(s), slowest {max(a.took for a in failed):.2f}"
            f" s; first add after the restart {first.started - restarted_at:+.2f} s from it"
        )
        # the worker: backoff, from one probe once the loops' calls in flight have failed
        _assert_backs_off(tries, outage)
        _assert_one_try_per_step(tries, outage)
        assert cpu_share < 0.05
        assert "Traceback" not in log, log
        for line in worker_lines:
            assert any(kind in line for kind in WORKER_STATE_CHANGES), worker_lines
        for kind in WORKER_STATE_CHANGES:
            assert sum(kind in line for line in worker_lines) <= 1, worker_lines
        # plus at most one "still down" reminder per 30 s
        assert len(worker_lines) <= len(WORKER_STATE_CHANGES) + 1, worker_lines
        # the producer: clear errors, quickly, for every add during the outage; then adds again
        during = [a for a in producer.adds if a.started + a.took < back_at]
        assert len(during) >= OUTAGE / 2, during  # it kept going, nothing hung
        assert all(isinstance(a.error, aioredis.ConnectionError) for a in during), during
        assert all(isinstance(a.error, aioredis.ConnectionError) for a in failed), failed
        assert max(a.took for a in failed) < 2.0
        assert first.started - restarted_at < 1.0
        assert len(producer_lines) <= 1, producer_lines
        resets = [r.getMessage() for r in caplog.records if "Redis dataset was reset" in r.msg]
        assert len(resets) == 1, resets  # the producer noticed the reset too, once
        # after the restart: the reset said once, the old result fenced off, new jobs run soon
        backoff_reached = max(gaps(tries))
        assert latency < 2.0 + min(2 * backoff_reached, 20.0) + 1.0
        # the empty server hands out id 1 again: the stale result is fenced off all the same
        assert f"result of job {job.id} discarded" in log, log
        assert log.count("lock renewal failed") <= 1, log
        assert log.count("cannot record job") <= 1, log
        assert log.count("Redis dataset was reset") == 1, log
        assert f"without the data of queue {queue_name!r}" in log
        assert len([x for x in read_ledger(ledger) if x["kind"] == "start"]) == 1 + len(produced)
        for added in produced:
            assert added.job_id is not None
            done = await queue.get_job(added.job_id)
            assert done is not None and done.returnvalue == done.data  # its own result
        await assert_invariants(queue.client, queue_name, completed=len(produced))


async def _state_is(queue: Queue, job_id: str, state: JobState) -> bool:
    return await queue.get_job_state(job_id) is state


ADDING = 10.0  # seconds R2/R3 add jobs (about 200 a second) before the SIGKILL


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("persistence", "window"), [("aof-everysec", 2.0), ("aof-always", 0.0)], ids=["R2", "R3"]
)
async def test_r2_killed_server_with_aof_keeps_acknowledged_adds(
    server_factory: ServerFactory,
    queue_name: str,
    tmp_path: Path,
    procs: list[WorkerProcess],
    persistence: str,
    window: float,
) -> None:
    """R2 (AOF everysec): a producer adds about 200 jobs a second for 10 s while a worker
    runs them; the server is SIGKILLed. Every add acknowledged more than 2 s before the crash
    survives it, and so does every completion seen more than 2 s before it (such a job never
    runs again). R3 (AOF always): the same with no window: every acknowledged add and every
    completion seen survives. Either way, jobs that were active come back through the stalled
    check, every surviving job completes, and only jobs whose completion was not yet durable
    run twice."""
    server = server_factory(persistence=persistence)
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    acked: list[tuple[str, float]] = []
    seen_completed: list[tuple[float, set[str]]] = []  # (read at, completed ids)
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=8)
    procs.append(worker)
    async with Queue(queue_name, url) as queue:
        started = last_read = time.monotonic()
        while time.monotonic() - started < ADDING:
            job = await queue.add("j", {"sleep": 0.05})  # a backlog builds up
            acked.append((job.id, time.monotonic()))
            if time.monotonic() - last_read >= 0.5:
                done = set(await queue.get_job_ids("completed", 0, -1))
                last_read = time.monotonic()  # the completions read were there by now
                seen_completed.append((last_read, done))
            await asyncio.sleep(0.004)
        server.kill()
        killed_at = time.monotonic()
    server.start()
    must_survive = {job_id for job_id, at in acked if at <= killed_at - window}
    stay_completed = set().union(*(done for at, done in seen_completed if at <= killed_at - window))
    async with Queue(queue_name, url) as queue:
        survived = {
            job_id for job_id, _ in acked if await queue.client.exists(f"{queue.keys.job(job_id)}")
        }
        completed_after_restart = set(await queue.get_job_ids("completed", 0, -1))

        async def all_done() -> bool:
            return set(await queue.get_job_ids("completed", 0, -1)) >= survived

        await wait_until(all_done, within=60)
        starts = _starts(ledger)
        twice = {job_id for job_id, n in starts.items() if n > 1}
        print(
            f"\n{persistence}: {len(acked)} adds acknowledged in {ADDING:.0f} s, "
            f"{len(acked) - len(survived)} lost (of the last "
            f"{sum(at > killed_at - window for _, at in acked)} within {window:.0f} s of the "
            f"kill); {len(stay_completed)} completions seen before the window, "
            f"{len(completed_after_restart)} completed after the restart; {len(twice)} ran twice"
        )
        assert len(acked) >= 100 * ADDING
        assert must_survive <= survived
        assert stay_completed <= completed_after_restart
        assert must_survive <= set(starts)
        # a job runs again only if its completion was not durable: never one seen completed
        assert not twice & stay_completed
        assert all(n <= 2 for n in starts.values()), twice
        await assert_invariants(queue.client, queue_name, completed=len(survived))


def _answers_loading(port: int) -> bool:
    """Whether the server on ``port`` answers PING with LOADING right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-LOADING")
    except OSError:
        return False


@pytest.mark.timeout(90)
async def test_r4_server_loading_a_large_aof(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R4: the server restarts and spends seconds loading its AOF (answering LOADING). The
    worker treats that as transient: it waits, fails no job, and runs them once loaded."""
    server = server_factory(persistence="aof-always")
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    filler = server.client()
    try:
        pipe = filler.pipeline(transaction=False)
        for i in range(20_000):
            pipe.set(f"filler:{i}", "x" * 100)
        pipe.execute()
    finally:
        filler.close()
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {}, {"delay": 2500}) for _ in range(20)])
    worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=5)
    procs.append(worker)
    await asyncio.sleep(1.0)
    server.kill()
    # 100 us per key: about 2 s of LOADING, with events processed so clients get the reply
    server.extra_args = (
        "--key-load-delay", "100", "--loading-process-events-interval-bytes", "1024",
    )  # fmt: skip
    restarting = asyncio.ensure_future(asyncio.to_thread(server.restart, 60))
    saw_loading = False
    while not restarting.done():
        saw_loading = saw_loading or await asyncio.to_thread(_answers_loading, server.port)
        await asyncio.sleep(0.05)
    await restarting
    assert saw_loading
    async with Queue(queue_name, url) as queue:
        await wait_until(lambda: _completed(queue, 20), within=30)
        assert await queue.get_totals() == (20, 0)
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        assert "Traceback" not in worker.output()
        assert _starts(ledger) == {j.id: 1 for j in jobs}
        await assert_invariants(queue.client, queue_name, completed=20)


@pytest.mark.timeout(90)
async def test_r10_client_kill_bursts(
    fresh_server: FaultServer, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R10: CLIENT KILL TYPE normal ten times in 3 s while a worker is busy: it recovers every
    time, and no job runs twice."""
    url, ledger = fresh_server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        jobs = await queue.add_bulk([("j", {"sleep": 0.1}) for _ in range(80)])
        worker = WorkerProcess(
            LEDGER_JOB, queue_name, url, ledger=ledger, concurrency=4, lock_duration=3000
        )
        procs.append(worker)
        await wait_until(lambda: _completed(queue, 1), within=20)
        killed = 0
        for _ in range(10):
            killed += fresh_server.drop_clients()
            await asyncio.sleep(0.3)
        assert killed >= 10
        await wait_until(lambda: _completed(queue, 80), within=40)
        assert await queue.get_totals() == (80, 0)
        assert _starts(ledger) == {j.id: 1 for j in jobs}
        assert await stream_events(queue.client, queue_name, "stalled") == []
        await assert_invariants(queue.client, queue_name, completed=80)


ABSENT = 8.0  # seconds R11 watches a worker wait for a server that is not there yet


@dataclass(frozen=True, slots=True)
class _Waited:
    """A ``corral worker`` started while nothing listens on its server's port, watched."""

    worker: WorkerProcess
    tries: list[float]  # its connection attempts, in seconds from its first one
    waited: float  # seconds watched from its first attempt
    cpu_share: float  # of a core, over that time
    lines: list[str]  # what it logged meanwhile


async def _worker_waiting_for_server(
    port: int, queue: str, url: str, tmp_path: Path, procs: list[WorkerProcess], seconds: float
) -> _Waited:
    """Start a worker with nothing listening on ``port`` and watch it try to connect for
    ``seconds`` from its first attempt (a listener counts the attempts, then frees the port)."""
    log_file = tmp_path / "worker.log"
    with AttemptRecorder(port, []) as recorder:
        worker = WorkerProcess(
            LEDGER_JOB, queue, url, ledger=tmp_path / "ledger.jsonl", log_file=log_file
        )
        procs.append(worker)
        pid = worker.proc.pid
        recorder.pids.append(pid)

        async def tried() -> bool:  # once the interpreter has started and imported
            return bool(recorder.times(pid))

        await wait_until(tried, within=20)
        first_try, cpu_before = recorder.times(pid)[0], cpu_seconds(pid)
        await asyncio.sleep(seconds)
    waited = time.monotonic() - first_try
    return _Waited(
        worker,
        [t - first_try for t in recorder.times(pid)],
        waited,
        (cpu_seconds(pid) - cpu_before) / waited,
        log_file.read_text().splitlines(),
    )


@pytest.mark.timeout(60)
async def test_r11_server_absent_when_worker_and_producer_start(
    queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R11: a producer with no server fails within seconds with a connection error (no
    hang). A worker started before the server retries with the same bounded exponential
    backoff as after an outage (counted by a listener on the port), quietly (one log line) and
    cheaply (under 5 % of a core), then runs jobs once the server appears."""
    server = FaultServer()  # not started: its port is free
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    try:
        async with Queue(queue_name, url) as queue:
            started = time.monotonic()
            with pytest.raises(aioredis.ConnectionError, match=f"127.0.0.1:{server.port}"):
                await queue.add("too-early", {})
            refused_after = time.monotonic() - started
        assert refused_after < 10
        watched = await _worker_waiting_for_server(
            server.port, queue_name, url, tmp_path, procs, ABSENT
        )
        worker, tries, waited = watched.worker, watched.tries, watched.waited
        cpu_share, lines = watched.cpu_share, watched.lines
        server.start()
        async with Queue(queue_name, url) as queue:
            job = await queue.add("j", {})
            added_at = time.monotonic()
            await wait_until(lambda: _completed(queue, 1), within=30)
            latency = time.monotonic() - added_at
            worker.signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.wait, 30) == 0
            print(
                f"\nR11: add() refused after {refused_after:.3f} s; worker "
                f"{_backoff_report(tries, waited)}; CPU {cpu_share:.2%} of a core over "
                f"{waited:.1f} s; {len(lines)} log line(s) while waiting; job done "
                f"{latency:.2f} s after its add"
            )
            # the first attempt is where the outage starts for a worker that starts without
            # a server: its first retry comes within 0.5 s of it
            _assert_backs_off(tries, waited)
            assert 0 < tries[1] <= 0.5, _backoff_report(tries, waited)
            # its first check (a call that redis-py retries) fails within a second; then only
            # the probe tries, once per step
            _assert_one_try_per_step(tries, waited, settle=STARTING_SETTLE)
            # one loop retries here, so its pauses are its backoff delays: they double
            delays = pauses(tries)
            assert len(delays) >= 2 and delays[-1] >= 1.5, _backoff_report(tries, waited)
            assert all(b >= 0.9 * a for a, b in itertools.pairwise(delays)), delays
            assert cpu_share < 0.05
            log = worker.output()
            assert "Traceback" not in log, log
            assert sum("not reachable" in line for line in lines) == 1, lines
            assert latency < 2.0 + min(2 * max(gaps(tries)), 20.0) + 1.0
            assert _starts(ledger) == {job.id: 1}
            await assert_invariants(queue.client, queue_name, completed=1)
    finally:
        server.close()


LONG_OUTAGE = 55.0
"""Seconds each phase of the long-outage test lasts: 0.1 s doubling reaches the 20 s cap
after 25.5 s, so a 55 s wait holds two capped pauses (at 25.5 and 45.5 s)."""


@pytest.mark.timeout(300)
async def test_r1_r11_long_outage_backoff_reaches_its_cap_and_stays_there(
    fresh_server: FaultServer, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """R1 and R11 past the cap: a worker waiting 55 s for a server that is not there yet
    doubles its pauses up to 20 s and then holds them there (never longer), repeating its
    "not reachable" line once per 30 s; then, started and running, it loses the server for
    55 s: once the calls its loops had in flight have failed, only its probe tries the server,
    one connection attempt per backoff step, doubling to the cap and holding there (at most
    two attempts in the last 25 s, none over 20 s apart), each state change is logged once
    and "not reachable" repeated once per 30 s, and after the restart a new job runs within
    the cap plus 2 s."""
    url, ledger, log_file = fresh_server.url, tmp_path / "ledger.jsonl", tmp_path / "worker.log"
    fresh_server.kill()  # a fresh, empty server that is down before the worker starts
    watched = await _worker_waiting_for_server(
        fresh_server.port, queue_name, url, tmp_path, procs, LONG_OUTAGE
    )
    worker, pid, waited = watched.worker, watched.worker.proc.pid, watched.waited
    start_tries, start_cpu, start_lines = watched.tries, watched.cpu_share, watched.lines
    await asyncio.to_thread(fresh_server.restart)
    async with Queue(queue_name, url) as queue:
        await queue.add("first", {})
        await wait_until(lambda: _completed(queue, 1), within=30)

        logged_before = log_file.stat().st_size
        fresh_server.kill()
        killed_at, cpu_before = time.monotonic(), cpu_seconds(pid)
        with AttemptRecorder(fresh_server.port, [pid]) as recorder:
            await asyncio.sleep(LONG_OUTAGE)
        outage = time.monotonic() - killed_at
        run_cpu = (cpu_seconds(pid) - cpu_before) / outage
        run_lines = log_file.read_bytes()[logged_before:].decode().splitlines()
        run_tries = [t - killed_at for t in recorder.times(pid)]
        await asyncio.to_thread(fresh_server.restart)
        restarted_at = time.monotonic()
        job = await queue.add("after", {})  # the server restarted empty: this is job 1 again
        await wait_until(lambda: _state_is(queue, job.id, JobState.COMPLETED), within=40)
        back_after = time.monotonic() - restarted_at
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 30) == 0
        late = [t for t in run_tries if t >= outage - 25.0]
        print(
            f"\nR11 long wait: {_backoff_report(start_tries, waited)}; CPU {start_cpu:.2%}; "
            f"{len(start_lines)} log line(s)\nR1 long outage: "
            f"{_backoff_report(run_tries, outage)}; {len(late)} attempt(s) in the last 25 s; "
            f"CPU {run_cpu:.2%}; {len(run_lines)} log line(s); job after the restart done "
            f"{back_after:.2f} s after it"
        )
        # waiting at start: one probe, pauses doubling to the cap, then at the cap
        delays = pauses(start_tries)
        report = _backoff_report(start_tries, waited)
        assert all(b >= 0.9 * a for a, b in itertools.pairwise(delays)), delays
        assert max(gaps([*start_tries, waited])) <= CAP + TIMER_SLACK, report
        assert sum(d >= 0.9 * CAP for d in delays) >= 1, report  # the cap was reached
        _assert_one_try_per_step(start_tries, waited, settle=STARTING_SETTLE)
        assert sum("not reachable" in line for line in start_lines) == 2, start_lines
        assert start_cpu < 0.05
        # running: after the calls in flight, one probe, doubling to the cap and holding there
        _assert_backs_off(run_tries, outage)
        assert max(gaps([0.0, *run_tries, outage])) <= CAP + TIMER_SLACK
        _assert_one_try_per_step(run_tries, outage)
        report = _backoff_report(run_tries, outage)
        assert sum(d >= 0.9 * CAP for d in gaps(run_tries)) >= 1, report  # the cap was reached
        # one attempt per capped pause: two at most in the last 25 s (the four loops of old,
        # each retrying on its own, each try a call that redis-py retried on new connections,
        # made about 20)
        assert len(late) <= 2, report
        assert run_cpu < 0.05
        for kind in WORKER_STATE_CHANGES:
            assert sum(kind in line for line in run_lines) <= 1, run_lines
        # "not reachable" once more, 30 s or more after "lost Redis"
        assert sum("not reachable" in line for line in run_lines) == 1, run_lines
        assert len(run_lines) <= len(WORKER_STATE_CHANGES) + 2, run_lines
        assert back_after < 20.0 + 2.0 + 1.0
        log = worker.output()
        assert "Traceback" not in log, log
        assert _starts(ledger) == {"1": 2}  # "first" before the restart, "after" since
        await assert_invariants(queue.client, queue_name, completed=1)


@pytest.mark.timeout(60)
async def test_s4_sigterm_while_redis_is_unreachable(
    server_factory: ServerFactory, queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """S4: SIGTERM while the server is down: the worker exits within the grace period plus
    slack, without a traceback; its job is left to the stalled check, which recovers it once
    the server is back (AOF keeps the state)."""
    server = server_factory(persistence="aof-always")
    url, ledger = server.url, tmp_path / "ledger.jsonl"
    async with Queue(queue_name, url) as queue:
        job = await queue.add("long", {"sleep": 30})
        worker = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger, shutdown_grace=1.0)
        procs.append(worker)
        await wait_until(lambda: _state_is(queue, job.id, JobState.ACTIVE), within=20)
    server.kill()
    worker.signal(signal.SIGTERM)
    sent = time.monotonic()
    await asyncio.to_thread(worker.wait, 30)
    assert time.monotonic() - sent < 1.0 + 8.0
    log = worker.output()
    assert "Traceback" not in log, log
    assert "left to the stalled check" in log
    server.start()
    rescuer = WorkerProcess(LEDGER_JOB, queue_name, url, ledger=ledger)
    procs.append(rescuer)
    async with Queue(queue_name, url) as queue:

        async def rerun() -> bool:
            return _starts(ledger).get(job.id) == 2

        await wait_until(rerun, within=20)
        events = await stream_events(queue.client, queue_name, "stalled")
        assert [e["job_id"] for e in events] == [job.id]
        await assert_invariants(queue.client, queue_name, active=1)


@pytest.mark.timeout(60)
async def test_s4_sigterm_while_the_first_connection_gets_no_answer(
    queue_name: str, tmp_path: Path, procs: list[WorkerProcess]
) -> None:
    """S4 at start: a worker whose server accepts the connection and never answers (a TLS
    client on a plaintext port looks the same: no answer to its hello) waits on its connect
    timeout; SIGTERM ends it within the grace period, not after its retries have timed out,
    with exit status 0, no traceback, and nothing written anywhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes each connection; nobody ever reads or replies
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        log_file = tmp_path / "worker.log"
        worker = WorkerProcess(LEDGER_JOB, queue_name, url, shutdown_grace=2.0, log_file=log_file)
        procs.append(worker)
        await asyncio.sleep(3.0)  # started, and waiting for its first reply
        worker.signal(signal.SIGTERM)
        sent = time.monotonic()
        status = await asyncio.to_thread(worker.wait, 30)
        took = time.monotonic() - sent
    print(f"\nS4 at start: exit {status} {took:.2f} s after SIGTERM")
    assert status == 0
    assert took < 2.0 + 1.0
    assert "Traceback" not in worker.output()


@pytest.mark.timeout(60)
async def test_r1_producer_says_once_that_the_dataset_was_reset(
    fresh_server: FaultServer, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """R1, producer side: a Queue that added jobs, then writes to the server after it came
    back empty, logs "Redis dataset was reset" once, at its first add, and adds as usual."""
    caplog.set_level(logging.INFO, logger="corral.server")
    async with Queue(queue_name, fresh_server.url) as queue:
        await queue.add("a", {})
        await queue.add("b", {})
        fresh_server.kill()
        fresh_server.restart()

        def resets() -> list[str]:
            found = (r.getMessage() for r in caplog.records)
            return [m for m in found if "Redis dataset was reset" in m]

        await queue.add("after", {})
        assert len(resets()) == 1, "the first add after the restart reports the reset"
        for _ in range(2):
            await queue.add("after", {})
        assert await queue.get_counts("wait") == {"wait": 3}
    assert len(resets()) == 1 and repr(queue_name) in resets()[0], resets()
