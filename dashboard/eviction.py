"""R5 for the dashboard: a server whose ``maxmemory-policy`` may evict keys can lose jobs silently.

``corral dash`` in write mode refuses such a server before the app opens (``read_policy_sync``,
``start_refusal``); the monitor reads the policy again at every (re)connect (``read_policy``),
since a failover can land on a node configured differently, and the action layer refuses to act
while it is unsafe (``action_refusal``). Both read by one rule (``policy_reads``, free of I/O):
from ``INFO memory``, which works where ``CONFIG`` is disabled (managed services, the read-only
ACL user); where ``INFO`` is refused (an ACL user without ``+info``) from ``CONFIG GET
maxmemory-policy``; where both are refused it is ``UNREADABLE``, which is never taken for safe:
write mode refuses it as it refuses an evicting policy, read-only mode shows it. No Textual here.
"""

from __future__ import annotations

from collections.abc import Generator

import redis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from engine.connection import SAFE_EVICTION_POLICY as SAFE_POLICY

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


Command = tuple[str, ...]
PolicyReads = Generator[Command, object, str | None]


def policy_reads() -> PolicyReads:
    """The one rule for reading the policy, free of I/O: yields each command to send, is sent
    its reply (or the ``ResponseError`` that refused it), and returns the policy: from ``INFO
    memory`` (None if that has no ``maxmemory_policy``); where INFO is refused (NOPERM, or INFO
    renamed away) from ``CONFIG GET``; where that is refused too, ``UNREADABLE``."""
    memory = yield ("INFO", "memory")
    if not isinstance(memory, ResponseError):
        return _policy_of(memory)
    config = yield ("CONFIG GET", "maxmemory-policy")
    return UNREADABLE if isinstance(config, ResponseError) else _configured(config)


async def read_policy(client: Redis) -> str | None:
    """The server's policy (``policy_reads``) through an asyncio client, as the monitor reads
    it at each (re)connect. Connection errors propagate (the caller reconnects)."""
    reads = policy_reads()
    command = next(reads)
    try:
        while True:
            try:
                reply: object = await client.execute_command(*command)  # type: ignore[no-untyped-call]
            except ResponseError as refused:
                reply = refused
            command = reads.send(reply)
    except StopIteration as done:
        policy: str | None = done.value
        return policy


def read_policy_sync(client: redis.Redis) -> str | None:
    """``read_policy`` through a synchronous client, as ``corral dash`` reads the policy before
    the app opens. Connection errors propagate."""
    reads = policy_reads()
    command = next(reads)
    try:
        while True:
            try:
                reply: object = client.execute_command(*command)  # type: ignore[no-untyped-call]
            except ResponseError as refused:
                reply = refused
            command = reads.send(reply)
    except StopIteration as done:
        policy: str | None = done.value
        return policy


def _policy_of(memory: object) -> str | None:
    if not isinstance(memory, dict):
        return None
    policy = memory.get("maxmemory_policy")
    return None if policy is None else str(policy)


def _configured(config: object) -> str:
    policy = config.get("maxmemory-policy") if isinstance(config, dict) else None
    return UNREADABLE if policy is None else str(policy)
