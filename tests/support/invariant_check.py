"""The invariant checker run after a test: every Corral queue the test touched, on every server
it used, must pass ``support.invariants``, or the test fails.

Which queues, on which server:

- a server the test started (any ``EmbeddedServer``, hence every ``FaultServer`` of
  ``fresh_server``/``server_factory`` or built by hand) is the test's own: every queue on it is
  checked, found by a ``SCAN`` for keys shaped ``<prefix>:{<queue>}:...``. A server that is
  down or frozen when the test ends is skipped;
- the session ``server`` is shared with the tests before: only the queues this test named are
  checked, i.e. its ``queue_name`` and every queue whose ``QueueKeys`` were built in this
  process while it ran (``Queue``, ``Worker``, ``FlowProducer`` and the checker all build
  them), and that have any state, meta or events key there.

The check runs when the test function returns, before fixtures are torn down, so worker
processes and servers are still as the scenario left them. A test that breaks the invariants
on purpose (corrupt hashes, damage for the checker to find) carries
``@pytest.mark.no_invariant_check(reason=...)``.

The parts, for a plugin or conftest to wire up (``support.invariant_plugin`` does, for the
suite): ``register_marker`` in ``pytest_configure``, ``watch_queues`` in an autouse fixture,
``check_after_test`` after the test call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from engine.keys import QueueKeys
from engine.server import EmbeddedServer
from support.invariants import STATE_NAMES, check_invariants

MARKER = "no_invariant_check"
MARKER_HELP = (
    f"{MARKER}(reason): the test breaks queue invariants on purpose (say why in reason); "
    "the invariant check after the test is skipped"
)
CHECK_TIMEOUT_S = 60.0  # per server; X7's 100,000-job queues are the largest the suite makes
SCAN_COUNT = 1000

# <prefix>:{<queue>}:<rest>, prefix and queue as engine.keys accepts them
_QUEUE_KEY = re.compile(r"^([A-Za-z0-9_.\-]{1,64}):\{([A-Za-z0-9_.\-]{1,200})\}:")


@dataclass
class TouchedQueues:
    """What one test touched: the queues it named and the servers it started."""

    shared_url: str | None
    named: set[QueueKeys] = field(default_factory=set)
    servers: list[EmbeddedServer] = field(default_factory=list)


TOUCHED = pytest.StashKey[TouchedQueues]()


def register_marker(config: pytest.Config) -> None:
    """Declare the opt-out marker (once, whoever asks first)."""
    if not any(line.startswith(MARKER) for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER_HELP)


def watch_queues(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start recording what the running test touches (call from an autouse fixture; the
    ``monkeypatch`` undoes the recording at teardown)."""
    shared_url: str | None = None
    if "server" in request.fixturenames:
        shared_url = str(request.getfixturevalue("server").url)
    touched = TouchedQueues(shared_url)
    if "queue_name" in request.fixturenames:
        touched.named.add(QueueKeys(str(request.getfixturevalue("queue_name"))))
    request.node.stash[TOUCHED] = touched

    def record_keys(original: Callable[[QueueKeys], None]) -> Callable[[QueueKeys], None]:
        def post_init(self: QueueKeys) -> None:
            original(self)
            touched.named.add(self)

        return post_init

    def record_server(original: Callable[..., None]) -> Callable[..., None]:
        def init(self: EmbeddedServer, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            touched.servers.append(self)

        return init

    monkeypatch.setattr(QueueKeys, "__post_init__", record_keys(QueueKeys.__post_init__))
    monkeypatch.setattr(EmbeddedServer, "__init__", record_server(EmbeddedServer.__init__))


def check_after_test(item: pytest.Item) -> None:
    """Fail ``item`` with every broken invariant, unless it opted out or recorded nothing."""
    touched = item.stash.get(TOUCHED, None)
    if touched is None or item.get_closest_marker(MARKER) is not None:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="invariants") as pool:
        # a loop of its own, in a thread: the test's loop (pytest-asyncio) is left alone
        broken = pool.submit(asyncio.run, _check_touched(touched)).result(CHECK_TIMEOUT_S)
    if broken:
        pytest.fail(
            "invariants broken when the test ended:\n"
            + "\n".join(broken)
            + f"\n(a test that breaks them on purpose says so with "
            f"@pytest.mark.{MARKER}(reason=...))",
            pytrace=False,
        )


async def _check_touched(touched: TouchedQueues) -> list[str]:
    named = set(touched.named)  # the checks below build QueueKeys too, which get recorded
    broken: list[str] = []
    own = {server.url: server for server in touched.servers}
    for url, server in own.items():
        if url == touched.shared_url or not (server.is_running and server.ping(timeout=1.0)):
            continue
        broken += await check_server(url, None)
    if touched.shared_url is not None and touched.shared_url not in own:
        broken += await check_server(touched.shared_url, named)
    return broken


async def check_server(url: str, queues: Iterable[QueueKeys] | None) -> list[str]:
    """Check ``queues`` on the server at ``url`` (those that exist there), or every queue on
    it when ``queues`` is None; one line per broken rule, naming the queue."""
    client = aioredis.Redis.from_url(
        url, decode_responses=True, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=5
    )
    try:
        if queues is None:
            found = await queues_on(client)
        else:
            found = [
                keys for keys in sorted(set(queues), key=_order) if await _exists(client, keys)
            ]
        lines: list[str] = []
        for keys in found:
            report = await check_invariants(client, keys)
            lines += [f"{url} {keys.base}: {rule}" for rule in report.violations]
        return lines
    except RedisError as exc:
        return [f"{url}: the invariant check could not read the server: {exc!r}"]
    finally:
        await client.aclose()


async def queues_on(client: aioredis.Redis) -> list[QueueKeys]:
    """Every queue that has a key on the server, whatever its prefix."""
    found: set[QueueKeys] = set()
    async for key in client.scan_iter(match="*:{*}:*", count=SCAN_COUNT):
        match = _QUEUE_KEY.match(str(key))
        if match is not None:
            found.add(QueueKeys(match.group(2), match.group(1)))
    return sorted(found, key=_order)


async def _exists(client: aioredis.Redis, keys: QueueKeys) -> bool:
    """Whether the queue has any state structure, its meta hash or its events stream."""
    names = [keys.of_state(state) for state in STATE_NAMES]
    return bool(await client.exists(keys.meta, keys.events, keys.stalled, *names))


def _order(keys: QueueKeys) -> tuple[str, str]:
    return keys.prefix, keys.queue
