"""Skip or fail: a test that needs something outside the project (Node's bullmq, a TLS-capable
server) skips with the reason where it is missing, unless an environment variable (set in CI)
says it must run, which makes the missing part a failure."""

from __future__ import annotations

import os
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
