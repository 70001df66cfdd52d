"""``python -m support.traced_dash OUT EVERY -- dash ARGS...``: the real ``corral`` entry point
(``corral dash ARGS...``) in this process with ``tracemalloc`` on, for the soak runs.

A daemon thread appends one JSON line to ``OUT`` every ``EVERY`` seconds, and one more when the
program ends: the seconds since start, the traced memory (current and peak) and tracemalloc's
own overhead in MiB, how long the snapshot took, and the allocation sites by line
(``Snapshot.statistics("lineno")``: ``file:line``, KiB, blocks), largest first, every site of at
least ``MIN_KB`` (at most ``MAX_SITES``), so a site missing from a sample held less than that.
The import machinery and this module are left out. ``corral dash`` and the modules it loads are
imported before tracing starts: their code and module objects cannot leak, and tracing them
would make each snapshot several times slower. The product code knows nothing of this.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import tracemalloc
from typing import Any

import corral.cli
import dashboard.app
import dashboard.cli  # noqa: F401 - imported by ``corral dash`` on demand; here before tracing
from support.soak import run_as_instrument

MIN_KB = 16.0
MAX_SITES = 200

_SKIPPED = ("<frozen importlib._bootstrap", "<unknown>", tracemalloc.__file__, __file__)
"""Sites left out of the top: the import machinery, tracemalloc's and this module's own."""


def sample(started: float) -> dict[str, Any]:
    """One line: memory figures and the top allocation sites now. Sites are grouped first and
    filtered after (``filter_traces`` would match every trace in Python: seconds, not ms)."""
    begun, cpu = time.monotonic(), time.thread_time()
    snapshot = tracemalloc.take_snapshot()
    traces = len(snapshot.traces)
    stats = [
        s
        for s in snapshot.statistics("lineno")
        if s.size >= MIN_KB * 1024 and not s.traceback[0].filename.startswith(_SKIPPED)
    ][:MAX_SITES]
    del snapshot
    current, peak = tracemalloc.get_traced_memory()
    ended = time.monotonic()
    return {
        "t": round(begun - started, 2),
        "snapshot_at": round(begun, 4),  # monotonic: one clock for every process of the host
        "snapshot_s": round(ended - begun, 4),
        "snapshot_cpu_s": round(time.thread_time() - cpu, 4),
        "traces": traces,
        "traced_mb": round(current / 2**20, 3),
        "peak_mb": round(peak / 2**20, 3),
        "overhead_mb": round(tracemalloc.get_tracemalloc_memory() / 2**20, 3),
        "top": [
            {
                "site": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                "kb": round(s.size / 1024, 1),
                "blocks": s.count,
            }
            for s in stats
        ],
    }


def _write(out: str, line: dict[str, Any]) -> None:
    with open(out, "a") as sink:
        sink.write(json.dumps(line) + "\n")


def _every(out: str, seconds: float, started: float, stop: threading.Event) -> None:
    while not stop.wait(seconds):
        _write(out, sample(started))


def main(argv: list[str]) -> int:
    """Trace, run ``corral`` with the arguments after ``--``, write the last sample."""
    out, every, sep, *rest = argv
    if sep != "--":
        print("usage: python -m support.traced_dash OUT EVERY -- dash ARGS...", file=sys.stderr)
        return 2
    run_as_instrument()  # an observer: it must not slow the dashboard it twins
    started = time.monotonic()
    tracemalloc.start(1)
    stop = threading.Event()
    threading.Thread(
        target=_every, args=(out, float(every), started, stop), name="tracemalloc", daemon=True
    ).start()
    try:
        return corral.cli.main(rest)
    finally:
        stop.set()
        _write(out, {**sample(started), "final": True})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
