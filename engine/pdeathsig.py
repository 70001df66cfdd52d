"""``die_with_parent()``: have the kernel SIGKILL this process when its parent dies (Linux).

Used by sandbox children and supervised workers, so that a worker or supervisor killed with
SIGKILL leaves no orphan running jobs behind. A no-op elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask for SIGKILL when the parent process exits (kept across ``exec``)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
