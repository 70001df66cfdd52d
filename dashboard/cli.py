"""``corral dash``: ``run_dash(args)`` builds the backend and runs the dashboard (the flags are
defined with the other commands in ``corral.cli``).

Before the app opens it looks at the server once, over one short connection
(``check_at_start``), and refuses (exit status 2, the reason on stderr) a Redis Cluster node in
any mode (R12), and in write mode a server that may evict keys, or whose policy this user may not
read (neither ``INFO`` nor ``CONFIG GET``), unless ``--allow-unsafe-eviction`` (R5).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.asyncio.connection import parse_url
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from corral.threshold_flags import thresholds_from
from dashboard.app import DashboardApp
from dashboard.backend import Backend
from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.keys import DEFAULT_BULL_PREFIX, validate_bull_queue_name
from dashboard.corral_backend import CorralBackend
from dashboard.credentials import resolve_url
from dashboard.durations import parse_age, stuck_error
from dashboard.eviction import is_evicting, read_policy_sync, start_refusal
from dashboard.sanitize import mask_url
from dashboard.screens.stalled import STUCK_AFTER_MS
from engine import gc_policy
from engine.connection import DEFAULT_URL, TlsOptions, cluster_refusal
from engine.keys import DEFAULT_PREFIX, validate_prefix, validate_queue_name


def _backend(args: argparse.Namespace) -> tuple[Backend, list[str]]:
    """The backend and the queues to show, checked by the rules of the chosen layout."""
    prefix = getattr(args, "prefix", None)
    if getattr(args, "bullmq", False):
        bull_queues = [validate_bull_queue_name(name) for name in args.queues or []]
        return BullMQBackend(DEFAULT_BULL_PREFIX if prefix is None else prefix), bull_queues
    queues = [validate_queue_name(name) for name in args.queues or []]
    corral_prefix = validate_prefix(DEFAULT_PREFIX if prefix is None else prefix)
    allow_unsafe = bool(getattr(args, "allow_unsafe_eviction", False))
    return CorralBackend(corral_prefix, allow_unsafe_eviction=allow_unsafe), queues


START_TIMEOUT_S = 3.0
"""How long ``corral dash`` waits for the server before it opens the app anyway (the app then
shows why it cannot connect, and checks the policy once it can)."""
CLUSTER_START_REFUSAL = (
    "corral dashboard: the server is a Redis Cluster node (cluster_enabled:1): the "
    "dashboard does not support Redis Cluster, whose keys are spread over nodes it does not "
    "connect to. Point it at a standalone server (or a primary behind a proxy)."
)


@dataclass(frozen=True, slots=True)
class StartCheck:
    """What ``corral dash`` found before the app opens."""

    cluster_node: bool = False
    """The server is a Redis Cluster node (False also where ``INFO cluster`` is refused)."""
    policy: str | None = None
    """Its ``maxmemory-policy`` (``read_policy_sync``), or None: not asked for, or not read."""


def check_at_start(url: str, *, policy: bool) -> StartCheck:
    """One look at the server over one short connection (one try, short timeouts): is it a
    Redis Cluster node, and (``policy``) what is its eviction policy. Nothing is found where it
    cannot be reached now (no server, wrong password, TLS failure): the app then shows why, and
    its monitor reads the policy once it connects."""
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=START_TIMEOUT_S,
        socket_timeout=START_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one try: the app's own reconnects take over
    )
    try:
        try:
            if cluster_refusal(client.info("cluster")) is not None:
                return StartCheck(cluster_node=True)
        except ResponseError:  # INFO refused: not known to be a cluster node
            pass
        return StartCheck(policy=read_policy_sync(client) if policy else None)
    except (RedisError, OSError):
        return StartCheck()
    finally:
        client.close()


def run_dash(args: argparse.Namespace) -> int:
    """Run the dashboard until the user quits; the exit status (2 for bad arguments)."""
    url = args.redis or os.environ.get("REDIS_URL") or DEFAULT_URL
    try:
        backend, queues = _backend(args)
        stuck_text = getattr(args, "stuck_after", None)
        if stuck_text is not None and (problem := stuck_error(stuck_text)) is not None:
            raise ValueError(f"--stuck-after: {problem}")
        password_file = getattr(args, "password_file", None)
        prompt = getpass.getpass if sys.stdin.isatty() else None  # never echoed
        url = resolve_url(url, Path(password_file) if password_file else None, prompt=prompt)
        tls = TlsOptions.from_namespace(args)
        connect_url = tls.apply(url)
        parse_url(connect_url)  # a URL redis-py cannot use fails here, not in the app
    except ValueError as exc:  # bad names or URL, a CredentialError, or a bad --tls-* option
        print(f"corral dashboard: {exc}", file=sys.stderr)
        return 2
    bullmq = isinstance(backend, BullMQBackend)
    stuck_after = parse_age(stuck_text) if stuck_text is not None else STUCK_AFTER_MS
    read_only = bool(args.read_only)
    allow_unsafe = bool(getattr(args, "allow_unsafe_eviction", False))
    try:
        thresholds = thresholds_from(args)
    except ValueError as exc:
        print(f"corral dashboard: {exc}", file=sys.stderr)
        return 2
    if bullmq and thresholds.any:
        print(
            "corral dashboard: alert thresholds are checked for Corral queues only, "
            "not with --bullmq",
            file=sys.stderr,
        )
        return 2
    found = check_at_start(connect_url, policy=not read_only and not allow_unsafe)
    if found.cluster_node:
        print(CLUSTER_START_REFUSAL, file=sys.stderr)
        return 2
    if found.policy is not None and is_evicting(found.policy):
        print(start_refusal(found.policy), file=sys.stderr)
        return 2
    app = DashboardApp(
        url,
        backend,
        queues=queues,
        read_only=read_only,
        thresholds=thresholds if thresholds.any else None,
        bell=bool(getattr(args, "bell", False)),
        stuck_after_ms=stuck_after,
        allow_unsafe_eviction=allow_unsafe,
        tls=tls,
    )
    app.title = f"Corral {mask_url(url)}"
    if bullmq:
        app.title = f"Corral · BullMQ {backend.prefix} {mask_url(url)}"
    if tls.insecure:
        app.title += " · TLS NOT VERIFIED (--tls-insecure)"
    gc_policy.settle()  # Textual, Rich and plotext are loaded: freeze what start-up made
    app.run()
    return 0
