"""Have the kernel signal this process when its parent dies (Linux; a no-op elsewhere).

``die_with_parent()`` (SIGKILL) is for sandbox children and supervised workers, so that a
worker or supervisor killed with SIGKILL leaves no orphan running jobs behind.
``stop_with_parent()`` (SIGTERM) is for the embedded server and the demo's workers, which
get the chance to shut down cleanly when a demo or test run is killed.
Both are meant for ``preexec_fn``: they run in the child between fork and exec, and the
setting is kept across ``exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def _signal_on_parent_death(sig: signal.Signals) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))


def die_with_parent() -> None:
    """Ask for SIGKILL when the parent process exits."""
    _signal_on_parent_death(signal.SIGKILL)


def stop_with_parent() -> None:
    """Ask for SIGTERM when the parent process exits."""
    _signal_on_parent_death(signal.SIGTERM)
