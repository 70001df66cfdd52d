"""Which tests end with the invariant check (``support.invariant_check``), and which opt out.

Loaded by ``tests/conftest.py``. It is one plugin rather than a ``conftest.py`` per folder
because mypy (``files = [..., "tests"]``, no ``__init__.py`` in the test folders) would see two
top-level modules named ``conftest``.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from support.invariant_check import MARKER, check_after_test, register_marker, watch_queues

TESTS_DIR = Path(__file__).resolve().parent.parent

ENGINE_SCENARIOS = frozenset(
    {
        "test_worker",  # W5-W8, B4, B7, X6, X8 with in-process workers
        "test_flows_run",  # F1, F2
        "test_flows_remove",  # F4
        "test_reconnect",  # R7, and a server killed under a worker
        "test_rate_limit",  # RL1, RL2
        "test_deduplication",  # X1
    }
)
"""Modules of ``tests/engine`` checked besides every ``test_*_processes`` module (real
``corral worker`` processes). The other engine tests (scripts called one by one, validation,
the API on hand-made states) are not checked. Every module of ``tests/reliability`` is."""

DELIBERATE_DAMAGE = {
    "reliability/test_invariant_checker.py::test_each_kind_of_damage_is_reported": (
        "damages the queue by hand so that the checker has something to name"
    ),
    "reliability/test_bad_input.py::test_b4_corrupt_job_shapes_fail_as_corrupt": (
        "B4 writes job hashes with missing fields and bad bytes; they stay, failed, as written"
    ),
    "reliability/test_operator_races.py::test_add_log_is_fenced_by_the_lock": (
        "deletes an active job's lock by hand to stand for a lapsed one; no worker runs a "
        "stalled check afterwards, so the job stays active with neither lock nor stall mark"
    ),
    "engine/test_worker.py::test_corrupt_job_hash_is_failed_and_the_worker_goes_on": (
        "B4 writes a job hash with fields missing; it stays, failed, as written"
    ),
}
"""``file::function`` (from ``tests/``) -> why the test leaves a queue that breaks an
invariant. The marker is added here, not on the functions, so that it is all in one place."""


def is_checked(path: Path) -> bool:
    """Whether the tests of the module at ``path`` end with the invariant check."""
    folder = path.parent.name
    if path.parent.parent != TESTS_DIR:
        return False
    if folder == "reliability":
        return True
    return folder == "engine" and (
        path.stem.endswith("_processes") or path.stem in ENGINE_SCENARIOS
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the opt-out marker."""
    register_marker(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of ``DELIBERATE_DAMAGE`` (each parametrization) with the opt-out."""
    for item in items:
        if not is_checked(item.path):
            continue
        name = getattr(item, "originalname", item.name)
        reason = DELIBERATE_DAMAGE.get(f"{item.path.relative_to(TESTS_DIR)}::{name}")
        if reason is not None:
            item.add_marker(getattr(pytest.mark, MARKER)(reason=reason))


@pytest.fixture(autouse=True)
def invariants_after_the_test(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For the modules checked: record the queues and servers the test touches."""
    if is_checked(request.path):
        watch_queues(request, monkeypatch)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Run the test, then the invariant check (only for a test that passed and was watched)."""
    result = yield
    check_after_test(item)
    return result
