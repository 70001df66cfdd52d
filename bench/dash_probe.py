"""``corral dash`` with a probe on its events tail, for the dashboard benchmark:
``python -m bench.dash_probe --out FILE -- dash --bullmq --redis URL``.

It runs the real command (``corral.cli.main`` with the arguments after ``--``) in this process,
with a counter on what every round of ``EventTail.read`` (the dashboard's stream read) returned:
entries read, gaps detected (entries trimmed before the dashboard read them: what raises the
"events trimmed before they were read" alert), rounds that read as many entries as one read may
return, and how old the newest entry read was (the tail's lag behind the writers: entry ids are
the server's clock in ms, the same clock as this process's on one machine). Every ``INTERVAL``
seconds, and at once after a round with a gap, it appends one JSON line of running totals to
FILE (``ProbeLine``), which the harness reads with ``tail_window``. The probe costs a few
microseconds a round (at most ~20 rounds a second while entries keep coming).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

INTERVAL = 0.1
"""Seconds between two lines written while the tail reads."""


@dataclass(frozen=True, slots=True)
class ProbeLine:
    """Running totals of the tail since the program started, as of ``t`` (``time.monotonic``,
    system-wide on Linux, so the harness's clock too)."""

    t: float
    rounds: int
    read: int
    """Stream entries read in all."""
    gaps: int
    """Rounds that found a gap (a stream with entries trimmed before they were read)."""
    full: int
    """Rounds that read as many entries as one XREAD may return (``event_tail.BATCH``): more
    may have been waiting, so the tail's read size, not the writers, set the pace."""
    lag_ms: float
    """Greatest lag of a round that read entries since the previous line (0 if none did)."""


@dataclass(frozen=True, slots=True)
class TailStats:
    """The tail over a window of the run, from the probe's lines."""

    read_per_s: float
    """Entries read per second over the window."""
    gaps_window: int
    """Gaps detected within the window."""
    gaps_total: int
    """Gaps detected since the program started, up to the end of the window."""
    full_window: int
    """Rounds at the read size within the window."""
    lag_max_ms: float
    """Greatest lag of a round in the window."""


def parse_lines(text: str) -> list[ProbeLine]:
    """The probe's lines in ``text`` (a partly written last line is skipped)."""
    out: list[ProbeLine] = []
    for line in text.splitlines():
        try:
            fields = json.loads(line)
            out.append(
                ProbeLine(
                    t=float(fields["t"]),
                    rounds=int(fields["rounds"]),
                    read=int(fields["read"]),
                    gaps=int(fields["gaps"]),
                    full=int(fields["full"]),
                    lag_ms=float(fields["lag_ms"]),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return out


def tail_window(lines: Sequence[ProbeLine], start: float, end: float) -> TailStats:
    """The tail between ``start`` and ``end`` (``time.monotonic`` seconds). The entries read by
    ``start`` and by ``end`` are interpolated between the probe's lines around each (held at
    the nearest line beyond the first or last), so the rate covers the harness's own window;
    counts and lag come from the lines within it. ``ValueError`` if no line falls within it
    (the tail never reported there)."""
    inside = [line for line in lines if start < line.t <= end]
    if not inside:
        raise ValueError(f"the probe wrote no line between {start:.3f} and {end:.3f}")
    before = [line for line in lines if line.t <= start]
    first = before[-1] if before else None
    last = inside[-1]
    read = [(line.t, float(line.read)) for line in lines]
    return TailStats(
        read_per_s=(interpolate(read, end) - interpolate(read, start)) / (end - start),
        gaps_window=last.gaps - (first.gaps if first else 0),
        gaps_total=last.gaps,
        full_window=last.full - (first.full if first else 0),
        lag_max_ms=max(line.lag_ms for line in inside),
    )


def interpolate(points: Sequence[tuple[float, float]], t: float) -> float:
    """The value at ``t`` of the line through ``points`` (``(t, value)``, ascending ``t``):
    linear between two points, the first or last value beyond them."""
    if not points:
        raise ValueError("no points")
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


def entry_age_ms(entry_id: str, now_s: float) -> float:
    """How old a stream entry is at ``now_s`` (``time.time()``): its id is ``<ms>-<seq>``."""
    ms = entry_id.partition("-")[0]
    return max(0.0, now_s * 1000 - int(ms)) if ms.isdigit() else 0.0


class Probe:
    """The running totals, written to ``out`` as ``ProbeLine``s."""

    def __init__(self, out: TextIO, batch: int, interval: float = INTERVAL) -> None:
        self.out = out
        self.batch = batch
        self.interval = interval
        self.rounds = self.read = self.gaps = self.full = 0
        self.lag_ms = 0.0
        self.written = -math.inf

    def observe(self, read: int, gaps: int, last_ids: Sequence[str]) -> None:
        """Count one round that read ``read`` entries and found ``gaps`` streams with a gap;
        ``last_ids`` are the newest ids it read (one per stream that moved)."""
        self.rounds += 1
        self.read += read
        self.gaps += 1 if gaps else 0
        self.full += 1 if read >= self.batch else 0
        if read:
            now = time.time()
            self.lag_ms = max([self.lag_ms, *(entry_age_ms(i, now) for i in last_ids)])
        t = time.monotonic()
        if gaps or t - self.written >= self.interval:
            line = ProbeLine(t, self.rounds, self.read, self.gaps, self.full, self.lag_ms)
            self.out.write(json.dumps(asdict(line)) + "\n")
            self.out.flush()
            self.written, self.lag_ms = t, 0.0


def install(out: TextIO) -> None:
    """Count every round of ``EventTail.read`` into ``out``: the round's result is built by
    ``event_tail.TailRound(...)`` once per round, so the probe wraps that constructor (one plain
    call a round, nothing in the awaits of the read itself)."""
    from dashboard import event_tail

    probe = Probe(out, event_tail.BATCH)
    real = event_tail.TailRound

    def observed(*args: Any, **kwargs: Any) -> event_tail.TailRound:
        round_ = real(*args, **kwargs)
        newest = max((event.entry_id for event in round_.events), key=_id_key, default=None)
        probe.observe(round_.read, len(round_.gaps), [newest] if newest else [])
        return round_

    event_tail.TailRound = observed  # type: ignore[misc, assignment]


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return (int(ms), int(seq)) if ms.isdigit() and seq.isdigit() else (0, 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Install the probe and run ``corral`` with the rest of the arguments."""
    parser = argparse.ArgumentParser(prog="python -m bench.dash_probe")
    parser.add_argument("--out", required=True, type=Path, help="file the probe appends to")
    parser.add_argument("corral", nargs=argparse.REMAINDER, help="-- then corral's arguments")
    args = parser.parse_args(argv)
    corral_args = args.corral[1:] if args.corral[:1] == ["--"] else args.corral
    with args.out.open("a", encoding="utf-8") as out:
        install(out)
        from corral.cli import main as corral_main

        return corral_main(corral_args)


if __name__ == "__main__":
    sys.exit(main())
