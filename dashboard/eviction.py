"""R5 for the dashboard: a server whose ``maxmemory-policy`` may evict keys can lose jobs silently.

``corral dash`` in write mode refuses such a server before the app opens (``policy_at_start``,
``start_refusal``); the monitor reads the policy again at every (re)connect (``read_policy``),
since a failover can land on a node configured differently, and the action layer refuses to act
while it is unsafe (``action_refusal``). The policy comes from ``INFO memory``, which works where
``CONFIG`` is disabled (managed services, the read-only ACL user). No Textual here.
"""

from __future__ import annotations

import redis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from engine.connection import SAFE_EVICTION_POLICY as SAFE_POLICY

START_TIMEOUT_S = 3.0
"""How long ``corral dash`` waits for the server before it opens the app anyway (the app then
shows why it cannot connect, and checks the policy once it can)."""


def is_evicting(policy: str | None) -> bool:
    """True for a known policy other than ``noeviction`` (None: not read, or not readable)."""
    return policy is not None and policy != SAFE_POLICY


def start_refusal(policy: str) -> str:
    """Why ``corral dash`` will not start in write mode, with the fix and the override."""
    return (
        f"corral dashboard: the server's maxmemory-policy is {policy!r}: under memory pressure "
        f"it may evict job keys and silently lose jobs. Only '{SAFE_POLICY}' is safe.\n"
        f"Fix: CONFIG SET maxmemory-policy {SAFE_POLICY} (and 'maxmemory-policy {SAFE_POLICY}' "
        "in redis.conf, so a restart keeps it).\n"
        "Or: --read-only to watch without acting, or --allow-unsafe-eviction to act anyway "
        "(accepting the risk)."
    )


def action_refusal(policy: str) -> str:
    """Why an action is refused while the server may evict keys (one line, for a notice)."""
    return (
        f"refused: the server's maxmemory-policy is {policy!r}, which may evict jobs; only "
        f"'{SAFE_POLICY}' is safe (CONFIG SET maxmemory-policy {SAFE_POLICY}, or restart the "
        "dashboard with --allow-unsafe-eviction)"
    )


def _policy_of(memory: object) -> str | None:
    if not isinstance(memory, dict):
        return None
    policy = memory.get("maxmemory_policy")
    return None if policy is None else str(policy)


async def read_policy(client: Redis) -> str | None:
    """The server's ``maxmemory-policy`` from ``INFO memory``; None where INFO is refused (an
    ACL without it). Connection errors propagate (the caller reconnects)."""
    try:
        memory = await client.info("memory")
    except ResponseError:
        return None
    return _policy_of(memory)


def policy_at_start(url: str) -> str | None:
    """The policy, read once before the app opens; None when it cannot be read now (no server,
    wrong password, TLS failure, INFO refused): the app then shows the connection problem, and
    its monitor reads the policy once it connects."""
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=START_TIMEOUT_S,
        socket_timeout=START_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one try: the app's own reconnects take over
    )
    try:
        return _policy_of(client.info("memory"))
    except (RedisError, OSError):
        return None
    finally:
        client.close()
