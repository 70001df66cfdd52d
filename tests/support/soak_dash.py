"""``python -m support.soak_dash --url URL --queue Q --probe P --out OUT --trace TRACE``: the real
``corral dash --queue Q --queue P`` on a soak run's queue, in a pseudo-terminal of 80x24
(``bench``'s ``PtyProgram``), watched from this process so the soak's producer shares no event
loop with the timings. ``P`` is a probe queue no worker takes from.

A twin of it runs under ``support.traced_dash`` (tracemalloc, samples in ``TRACE``; none with
``--trace-every 0``), on a terminal of its own, and gets the same keys: tracemalloc makes every
allocation dearer (about three times the dashboard's CPU), so the times and the memory are
measured on the untraced one and the allocation sites on the twin.

Appends JSON lines to ``OUT``, with ``at`` in ``time.monotonic()`` seconds (one clock for every
process of the host):

- ``start`` (the pids of the dashboard and of its twin), ``shown`` (both queues on screen; the
  mode in the top bar);
- ``refresh``, every ``--probe-every`` s: one job added to ``P`` (or the one there removed),
  and the ms from just before the command was sent until the bytes that draw ``P``'s new wait
  count (1, or 0) reached the terminal. The overview is recounted and redrawn as often under
  load as ever (the soak queue changes all the time), so this is how stale what it shows is;
- ``key``, every ``--key-every`` s: ``enter`` (opens the soak queue: its screen with the page
  line of the wait list) then ``q`` (back to the overview), the ms from sending each key until
  its effect was drawn (then the same keys to the twin, untimed);
- ``error`` if a screen did not show what was awaited within ``SCREEN_TIMEOUT``,
  ``probe_error`` if a probe command failed (a CLIENT KILL in L2), ``end``.

Runs until SIGTERM, then quits both with ctrl+c (so the twin writes its last trace).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from bench.dashboard import queue_row, shows_wait
from bench.terminal import Predicate, PtyProgram
from engine import Queue
from support.workers import TESTS_DIR

SCREEN_TIMEOUT = 30.0
START_TIMEOUT = 60.0
COLUMNS, ROWS = 80, 24

Write = Callable[..., None]


def overview(queue: str, probe: str) -> Predicate:
    """True once the overview lists both queues."""
    return lambda lines: queue_row(lines, queue) is not None and queue_row(lines, probe) is not None


def queue_screen(queue: str) -> Predicate:
    """True once the queue's screen shows its title and the wait list's page line."""
    title = f"queue {queue}"
    return lambda lines: (
        any(line.strip() == title for line in lines)
        and any(line.lstrip().startswith("wait: rows") for line in lines)
    )


def top_bar_mode(lines: list[str]) -> str:
    """The mode word of the top bar (LIVE, POLLING, ...)."""
    words = lines[0].split() if lines else []
    return words[1] if len(words) > 1 else "?"


async def _refresh(dash: PtyProgram, probe: Queue, held: list[str], write: Write) -> None:
    """One state change of the probe queue (add a job to an empty one, else remove one), timed
    until the overview shows the new wait count. A command the server's CLIENT KILL broke is
    written as a ``probe_error``; the jobs held are then read again (it may have been applied)
    and shown before the next change."""
    at = time.monotonic()
    sent = time.perf_counter()
    try:
        if held:
            await probe.remove_job(held.pop())
        else:
            held.append((await probe.add("probe", {})).id)
    except RedisError as exc:
        write(kind="probe_error", what=repr(exc), at=round(at, 4))
        held[:] = await probe.get_job_ids("wait", 0, 99)  # it holds one or two
        settled = shows_wait(probe.name, len(held))  # so the next change starts from it
        await dash.wait_for(settled, SCREEN_TIMEOUT, f"{len(held)} waiting in {probe.name}")
        return
    want = len(held)
    shown = await dash.wait_for(
        shows_wait(probe.name, want), SCREEN_TIMEOUT, f"{want} waiting in {probe.name}"
    )
    write(kind="refresh", at=round(at, 4), ms=round((shown - sent) * 1000, 2), wait=want)


async def _keys(
    dash: PtyProgram, twin: PtyProgram | None, args: argparse.Namespace, write: Write
) -> None:
    """Open the queue and go back, each key timed until the screen shows its effect; then the
    same on the twin."""
    steps = (
        ("enter", "\r", queue_screen(args.queue), f"the screen of queue {args.queue}"),
        ("q", "q", overview(args.queue, args.probe), "the overview again"),
    )
    for name, keys, effect, what in steps:
        at = time.monotonic()
        sent = time.perf_counter()
        dash.send(keys)
        shown = await dash.wait_for(effect, SCREEN_TIMEOUT, what)
        write(kind="key", key=name, at=round(at, 4), ms=round((shown - sent) * 1000, 2))
    if twin is None:
        return
    for _, keys, effect, what in steps:
        twin.send(keys)
        await twin.wait_for(effect, SCREEN_TIMEOUT, f"{what} (traced twin)")


async def _measure(
    dash: PtyProgram,
    twin: PtyProgram | None,
    probe: Queue,
    args: argparse.Namespace,
    stop: asyncio.Event,
    write: Write,
) -> None:
    held: list[str] = []
    next_key = time.monotonic() + args.key_every
    while not stop.is_set():
        tick = time.monotonic()
        if tick >= next_key:
            await _keys(dash, twin, args, write)
            next_key += args.key_every
        else:
            await _refresh(dash, probe, held, write)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                stop.wait(), max(0.0, tick + args.probe_every - time.monotonic())
            )


async def _start(argv: list[str]) -> PtyProgram:
    return await PtyProgram.start(argv, cwd=TESTS_DIR, columns=COLUMNS, rows=ROWS)


async def watch(args: argparse.Namespace) -> int:
    """Start the dashboard (and its traced twin), measure until SIGTERM, quit them; 1 if a
    screen failed to show something in time."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    dash_args = ["dash", "--redis", args.url, "--queue", args.queue, "--queue", args.probe]
    traced = [sys.executable, "-m", "support.traced_dash", args.trace, str(args.trace_every)]
    shown = overview(args.queue, args.probe)
    status = 0
    with open(args.out, "a", buffering=1) as sink:  # noqa: ASYNC230 - short lines, rarely

        def write(**line: Any) -> None:
            sink.write(json.dumps(line) + "\n")

        async with contextlib.AsyncExitStack() as programs, Queue(args.probe, args.url) as probe:
            dash = await programs.enter_async_context(
                await _start([sys.executable, "-m", "corral", *dash_args])
            )
            twin = None
            if args.trace_every > 0:
                twin = await programs.enter_async_context(await _start([*traced, "--", *dash_args]))
            pids = {"pid": dash.pid, "traced_pid": None if twin is None else twin.pid}
            write(kind="start", **pids, at=round(time.monotonic(), 4))
            try:
                for program in (dash, twin) if twin is not None else (dash,):
                    await program.wait_for(shown, START_TIMEOUT, "both queues")
                write(kind="shown", mode=top_bar_mode(dash.lines()), at=round(time.monotonic(), 4))
                await _measure(dash, twin, probe, args, stop, write)
            except (TimeoutError, EOFError) as exc:
                write(kind="error", what=str(exc), at=round(time.monotonic(), 4))
                status = 1
        write(kind="end", at=round(time.monotonic(), 4))
    return status


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line of the watcher."""
    parser = argparse.ArgumentParser(prog="python -m support.soak_dash")
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--probe", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--trace", required=True)
    parser.add_argument("--trace-every", type=float, default=60.0)
    parser.add_argument("--probe-every", type=float, default=0.25)
    parser.add_argument("--key-every", type=float, default=10.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(watch(parse_args(sys.argv[1:]))))
