"""Small number, time and sparkline formatting shared by the widgets."""

from __future__ import annotations

import time
from collections.abc import Sequence

import humanize

BARS = "▁▂▃▄▅▆▇█"


def compact(n: int) -> str:
    """``1234`` -> ``1234``, ``12345`` -> ``12.3k``, ``1234567`` -> ``1.2M``."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def rate(per_sec: float) -> str:
    """Jobs per second, short."""
    if per_sec == 0:
        return "0"
    if per_sec < 10:
        return f"{per_sec:.1f}"
    return compact(round(per_sec))


def spark(values: Sequence[float], width: int = 10) -> str:
    """The last ``width`` values as a one-line bar chart."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = max(tail)
    if top <= 0:
        return BARS[0] * len(tail)
    return "".join(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1)))] for v in tail)


def age(ms: int | None, now: float | None = None) -> str:
    """``3 minutes ago`` style age of an epoch-ms time, or ``-``."""
    if ms is None:
        return "-"
    seconds = (now if now is not None else time.time()) - ms / 1000
    return humanize.naturaldelta(max(0.0, seconds))


def short_duration(ms: int | None) -> str:
    """``850ms``, ``42s``, ``7m``, ``3h``, ``2d``; ``-`` for none (fits a narrow column)."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms}ms"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms // 1000}s"


def clock(epoch: float | None) -> str:
    """``HH:MM:SS`` local time, or ``--:--:--``."""
    return time.strftime("%H:%M:%S", time.localtime(epoch)) if epoch else "--:--:--"


def exact_time(ms: int | None) -> str:
    """``2026-12-02 18:03:01.123 +0000``, local time to the millisecond, or ``-``."""
    if ms is None:
        return "-"
    local = time.localtime(ms / 1000)
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", local)
        + f".{ms % 1000:03d} "
        + time.strftime("%z", local)
    )


def progress_cell(raw: str | None) -> str:
    """A job's stored progress in a few characters: ``42%`` for a number, ``{…}`` for an
    object (the job screen shows it whole), ``-`` for none."""
    if raw is None or raw in ("", "0"):
        return "-"
    try:
        value = float(raw)
    except ValueError:
        return "{…}" if raw.startswith("{") else "…"
    if value != value or value in (float("inf"), float("-inf")):  # NaN or infinite
        return "?"
    return f"{value:.0f}%" if 0 <= value <= 100 else "?"
