"""Fixtures that bring the real BullMQ (Node) to the tests, installed once per session; loaded
as a plugin by ``tests/conftest.py``.

npm installs BullMQ into the ignored ``tests/.node/bullmq<major>/`` before the first test runs
(only for the majors the selected tests need, and only if that folder does not already hold the
pinned versions), so the install is not counted in any test's pytest-timeout. Under
``pytest -n 2`` each xdist worker does this before its first test, one at a time under a file
lock: the first runs npm, the others find its install. npm is given a bounded fetch behaviour
and a timeout of its own: an unreachable registry fails in seconds, not minutes. Without node,
without npm, or when npm cannot install, the tests that need BullMQ skip with the reason;
``CORRAL_REQUIRE_NODE=1`` turns those skips into failures."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import NoReturn

import pytest

from support.bullmq_node import NODE_ROOT, PACKAGES, NodeDriver, NodeUnavailable
from support.required import fetch_lock, required, skip_or_fail

REQUIRE_NODE = "CORRAL_REQUIRE_NODE"
"""Set to 1 and every skip for want of node, npm or an installed BullMQ is a failure instead."""
INSTALL_TIMEOUT = 90.0
"""npm's whole run, in seconds: below the suite's 120 s per-test timeout, so even an install
done lazily inside a test's setup ends with a skip rather than being cut by pytest-timeout."""
NPM_FLAGS = (
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
    "--prefer-offline",  # a package already in npm's cache is not fetched again
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=2000",
    "--fetch-retry-maxtimeout=10000",
    "--fetch-timeout=30000",  # npm's default is 5 minutes a request
    "--loglevel=error",
)
ERROR_LINES = 6
"""How many of the last lines of npm's error a skip reason quotes."""

_PREFIX = re.compile(r"^npm (?:error|ERR!) ?")
_NOISE = re.compile(r"^(?:\s+(?:at |\w+: )|\s*}\s*$)")  # stack frames, error object fields
_sessions: dict[str, Path | NodeUnavailable] = {}


def node_required() -> bool:
    """Whether ``CORRAL_REQUIRE_NODE`` asks for the Node tests to run rather than skip."""
    return required(REQUIRE_NODE)


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it under ``CORRAL_REQUIRE_NODE=1``."""
    skip_or_fail(reason, REQUIRE_NODE)


def _installed(folder: Path, package: str) -> str | None:
    try:
        manifest = json.loads((folder / "node_modules" / package / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) else None


def npm_error(stderr: str | bytes | None) -> str:
    """The last ``ERROR_LINES`` lines of what npm printed (without its stack frames and the
    error object's fields), on one line."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = []
    for raw in (stderr or "").splitlines():
        line = _PREFIX.sub("", raw)
        if line.strip() and not _NOISE.match(line):
            lines.append(line.strip())
    return "; ".join(lines[-ERROR_LINES:]) or "npm printed nothing"


def _run_npm(argv: list[str], folder: Path, timeout: float) -> tuple[int | None, str]:
    """npm's exit status (None if it ran out of time, then killed with its own children) and
    its stderr."""
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, killed whole on timeout
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
        return None, stderr
    return proc.returncode, stderr


def install_bullmq(
    major: str,
    *,
    root: Path = NODE_ROOT,
    registry: str | None = None,
    cache: Path | None = None,
    timeout: float = INSTALL_TIMEOUT,
    announce: Callable[[str], None] | None = None,
) -> Path:
    """The ``node_modules`` folder holding BullMQ ``major`` (5 or 6) under ``root``, reused if
    it holds the pinned versions, npm-installed otherwise; ``NodeUnavailable`` with the reason
    when node or npm is missing or npm fails or runs out of ``timeout``. ``registry`` and
    ``cache`` override npm's own (the tests point them at a closed port and an empty folder)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise NodeUnavailable(
                f"{tool} is not installed: the tests on the real BullMQ need Node.js "
                "(node and npm on PATH)"
            )
    packages = PACKAGES[major]
    folder = root / f"bullmq{major}"
    with fetch_lock(root, ".install.lock"):
        if all(_installed(folder, name) == version for name, version in packages.items()):
            return folder / "node_modules"
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / "package.json"
        if not manifest.exists():
            manifest.write_text(json.dumps({"name": f"corral-tests-bullmq{major}"}) + "\n")
        specs = [f"{name}@{version}" for name, version in packages.items()]
        argv = ["npm", "install", *NPM_FLAGS, *specs]
        if registry is not None:
            argv.append(f"--registry={registry}")
        if cache is not None:
            argv.append(f"--cache={cache}")
        if announce is not None:
            announce(f"npm install {' '.join(specs)} into {folder}")
        status, stderr = _run_npm(argv, folder, timeout)
        if status != 0:
            late = f"no result within {timeout:g} s; " if status is None else ""
            raise NodeUnavailable(f"npm could not install {specs[0]}: {late}{npm_error(stderr)}")
    return folder / "node_modules"


def bullmq_or_skip(
    major: str,
    *,
    root: Path = NODE_ROOT,
    registry: str | None = None,
    cache: Path | None = None,
    timeout: float = INSTALL_TIMEOUT,
) -> Path:
    """``install_bullmq``, with a skip (or failure, see ``unavailable``) where it raises."""
    try:
        return install_bullmq(major, root=root, registry=registry, cache=cache, timeout=timeout)
    except NodeUnavailable as exc:
        unavailable(str(exc))


def _session_install(major: str, announce: Callable[[str], None] | None = None) -> None:
    if major not in _sessions:
        try:
            _sessions[major] = install_bullmq(major, announce=announce)
        except NodeUnavailable as exc:
            _sessions[major] = exc


def _modules(major: str) -> Path:
    _session_install(major)  # already done before the first test, unless run outside pytest's loop
    found = _sessions[major]
    if isinstance(found, NodeUnavailable):
        unavailable(str(found))
    return found


def _majors(items: Iterable[pytest.Item]) -> set[str]:
    """The BullMQ majors that ``items`` need through the fixtures below."""
    majors: set[str] = set()
    for item in items:
        names = getattr(item, "fixturenames", ())
        majors.update(major for major in PACKAGES if f"bullmq{major}_modules" in names)
        if "bullmq_modules" in names:
            callspec = getattr(item, "callspec", None)
            param = callspec.params.get("bullmq_modules") if callspec is not None else None
            majors.update([param] if isinstance(param, str) else PACKAGES)
    return majors


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    """Install the BullMQ majors the selected tests need before the first test starts, so no
    test's timeout includes npm's run."""
    if session.config.option.collectonly:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    worker = getattr(session.config, "workerinput", {}).get("workerid")  # an xdist worker's id

    def announce(what: str) -> None:
        if worker is not None:  # the worker's own reporter is not shown: its stderr is
            os.write(2, f"corral tests ({worker}): {what}\n".encode())
        elif reporter is not None:
            reporter.write_line(f"corral tests: {what}")

    for major in sorted(_majors(session.items), reverse=True):
        _session_install(major, announce)


@pytest.fixture(scope="session", params=["6", "5"], ids=["bullmq6", "bullmq5"])
def bullmq_modules(request: pytest.FixtureRequest) -> Path:
    """``node_modules`` with BullMQ 6.7 or 5.81 (each test runs once per major)."""
    return _modules(str(request.param))


@pytest.fixture(scope="session")
def bullmq6_modules() -> Path:
    """``node_modules`` with BullMQ 6.7 only."""
    return _modules("6")


@pytest.fixture
async def node(bullmq_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ (5 or 6) against the session server."""
    driver = await NodeDriver(bullmq_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def node6(bullmq6_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ 6 against the session server."""
    driver = await NodeDriver(bullmq6_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(scope="session")
def bullmq5_modules() -> Path:
    """``node_modules`` with BullMQ 5.81 only."""
    return _modules("5")


@pytest.fixture
async def node5(bullmq5_modules: Path, redis_url: str) -> AsyncIterator[NodeDriver]:
    """A Node process driving BullMQ 5 against the session server."""
    driver = await NodeDriver(bullmq5_modules, redis_url).start()
    try:
        yield driver
    finally:
        await driver.close()
