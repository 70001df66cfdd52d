"""Clock control for child processes: the ``libfaketime.so.1`` shipped in the ``libfaketime``
wheel, preloaded into a worker or producer process to skew or step its wall clock.

Only the wall clock is faked (``DONT_FAKE_MONOTONIC``), as when an NTP step or a wrong host
clock moves ``time.time()`` while ``CLOCK_MONOTONIC`` keeps going.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

LIB_NAME = "libfaketime.so.1"


def faketime_library() -> Path | None:
    """The preloadable library from the installed ``libfaketime`` package, or None."""
    try:
        spec = importlib.util.find_spec("libfaketime")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    found = Path(spec.origin).parent / "vendor" / "libfaketime" / "src" / LIB_NAME
    return found if found.is_file() else None


def faketime_env(
    library: Path, *, offset: str | None = None, file: Path | None = None
) -> dict[str, str]:
    """Environment for a child whose wall clock is shifted by ``offset`` (``"+300s"``), or
    follows the spec written in ``file``, which is re-read on every clock call so a test can
    step the clock of a running process by rewriting it."""
    env = {"LD_PRELOAD": str(library), "DONT_FAKE_MONOTONIC": "1"}
    if offset is not None:
        env["FAKETIME"] = offset
    if file is not None:
        env["FAKETIME_TIMESTAMP_FILE"] = str(file)
        env["FAKETIME_NO_CACHE"] = "1"
    return env
