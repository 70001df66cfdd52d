"""R5 for the dashboard: a server whose ``maxmemory-policy`` may evict keys can lose jobs silently.

``corral dash`` in write mode refuses such a server before the app opens (``policy_at_start``,
``start_refusal``); the monitor reads the policy again at every (re)connect (``read_policy``),
since a failover can land on a node configured differently, and the action layer refuses to act
while it is unsafe (``action_refusal``). The policy comes from ``INFO memory``, which works where
``CONFIG`` is disabled (managed services, the read-only ACL user); where ``INFO`` is refused (an
ACL user without ``+info``) from ``CONFIG GET maxmemory-policy``; where both are refused it is
``UNREADABLE``, which is never taken for safe: write mode refuses it as it refuses an evicting
policy, read-only mode shows it. No Textual here.
"""

from __future__ import annotations

import redis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from engine.connection import SAFE_EVICTION_POLICY as SAFE_POLICY
from engine.connection import cluster_refusal

START_TIMEOUT_S = 3.0
"""How long ``corral dash`` waits for the server before it opens the app anyway (the app then
shows why it cannot connect, and checks the policy once it can)."""


UNREADABLE = "unknown"
"""The policy as read where neither ``INFO`` nor ``CONFIG GET`` may read it (no server has a
policy of that name): it may evict, so it is not safe."""
UNREADABLE_WHY = "INFO refused for this user (grant +info)"
UNREADABLE_NOTICE = f"eviction policy unknown: {UNREADABLE_WHY}"
"""The one-line notice a dashboard shows while the policy cannot be read."""


def is_evicting(policy: str | None) -> bool:
    """True for a policy other than ``noeviction``, ``UNREADABLE`` included (None: not read
    yet, as before the first connect)."""
    return policy is not None and policy != SAFE_POLICY


def start_refusal(policy: str) -> str:
    """Why ``corral dash`` will not start in write mode, with the fix and the override."""
    if policy == UNREADABLE:
        return (
            f"corral dashboard: the server's maxmemory-policy cannot be read: {UNREADABLE_WHY}, "
            f"and CONFIG GET is refused too. Only '{SAFE_POLICY}' is safe: any other policy "
            "may evict job keys and silently lose jobs, so the dashboard does not act on a "
            "server it cannot check.\n"
            "Fix: ACL SETUSER <user> +info (the dashboard reads only INFO memory with it).\n"
            "Or: --read-only to watch without acting, or --allow-unsafe-eviction to act anyway "
            "(accepting the risk)."
        )
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
    if policy == UNREADABLE:
        return (
            f"refused: the server's eviction policy is unknown ({UNREADABLE_WHY}); only "
            f"'{SAFE_POLICY}' is safe (or restart the dashboard with --allow-unsafe-eviction)"
        )
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


def _configured(config: object) -> str:
    policy = config.get("maxmemory-policy") if isinstance(config, dict) else None
    return UNREADABLE if policy is None else str(policy)


async def read_policy(client: Redis) -> str | None:
    """The server's ``maxmemory-policy`` from ``INFO memory``, else (INFO refused, as for an ACL
    user without ``+info``) from ``CONFIG GET``, else ``UNREADABLE``. Connection errors
    propagate (the caller reconnects)."""
    try:
        return _policy_of(await client.info("memory"))
    except ResponseError:  # NOPERM, or INFO renamed away
        pass
    try:
        return _configured(await client.config_get("maxmemory-policy"))
    except ResponseError:
        return UNREADABLE


def _start_client(url: str) -> redis.Redis:
    """A client for one quick look before the app opens: one try, short timeouts."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=START_TIMEOUT_S,
        socket_timeout=START_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one try: the app's own reconnects take over
    )


def policy_at_start(url: str) -> str | None:
    """The policy, read once before the app opens (as ``read_policy`` does: ``UNREADABLE``
    where INFO and CONFIG GET are refused); None when it cannot be read now (no server, wrong
    password, TLS failure): the app then shows the connection problem, and its monitor reads
    the policy once it connects."""
    client = _start_client(url)
    try:
        try:
            return _policy_of(client.info("memory"))
        except ResponseError:
            pass
        try:
            return _configured(client.config_get("maxmemory-policy"))
        except ResponseError:
            return UNREADABLE
    except (RedisError, OSError):
        return None
    finally:
        client.close()


def cluster_at_start(url: str) -> str | None:
    """Why ``corral dash`` will not open on this server: it is a Redis Cluster node, whose
    other nodes hold keys the dashboard's one connection cannot read (read-only or not). None
    for any other server, or when ``INFO cluster`` cannot be read now."""
    client = _start_client(url)
    try:
        why = cluster_refusal(client.info("cluster"))
    except (RedisError, OSError):
        return None
    finally:
        client.close()
    if why is None:
        return None
    return (
        "corral dashboard: the server is a Redis Cluster node (cluster_enabled:1): the "
        "dashboard does not support Redis Cluster, whose keys are spread over nodes it does not "
        "connect to. Point it at a standalone server (or a primary behind a proxy)."
    )
