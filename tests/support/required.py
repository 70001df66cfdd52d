"""What tests need from outside the project (Node's bullmq, a TLS-capable server): fetched once
into an ignored folder under a file lock (``fetch_lock``), and where it cannot be had, the test
skips with the reason, unless an environment variable (set in CI) says it must run, which makes
the missing part a failure (``skip_or_fail``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest


def required(variable: str) -> bool:
    """Whether ``variable`` (``CORRAL_REQUIRE_…``) asks for the tests to run rather than skip."""
    return os.environ.get(variable, "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str, variable: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it where ``variable`` is set to 1."""
    if required(variable):
        pytest.fail(f"{reason} ({variable}=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def fetch_lock(root: Path, name: str) -> Iterator[None]:
    """One fetch or install under ``root`` at a time, across processes (xdist workers, parallel
    runs), through the lock file ``root/name``; the caller checks for an earlier fetch under
    the lock too, so a process that waited finds the other one's files."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / name).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
