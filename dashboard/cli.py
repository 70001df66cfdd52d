"""``corral dash``: ``run_dash(args)`` builds the backend and runs the dashboard (the flags are
defined with the other commands in ``corral.cli``).

In write mode it first reads the server's ``maxmemory-policy`` and refuses (exit status 2, the
reason on stderr) a server that may evict keys, or whose policy this user may not read (neither
``INFO`` nor ``CONFIG GET``), unless ``--allow-unsafe-eviction`` (R5). In any mode it refuses a
Redis Cluster node (R12).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from redis.asyncio.connection import parse_url

from corral.threshold_flags import thresholds_from
from dashboard.app import DashboardApp
from dashboard.backend import Backend
from dashboard.bullmq.backend import BullMQBackend
from dashboard.bullmq.keys import DEFAULT_BULL_PREFIX, validate_bull_queue_name
from dashboard.corral_backend import CorralBackend
from dashboard.credentials import resolve_url
from dashboard.durations import parse_age, stuck_error
from dashboard.eviction import cluster_at_start, is_evicting, policy_at_start, start_refusal
from dashboard.sanitize import mask_url
from dashboard.screens.stalled import STUCK_AFTER_MS
from engine import gc_policy
from engine.connection import DEFAULT_URL, TlsOptions
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


def _evicting_server(url: str) -> bool:
    """True (and the reason, fix and override on stderr) when the server's policy may evict
    keys or is refused to this user; False when it is safe or cannot be read now (no server:
    the app then shows why, and its monitor checks once connected)."""
    policy = policy_at_start(url)
    if policy is None or not is_evicting(policy):
        return False
    print(start_refusal(policy), file=sys.stderr)
    return True


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
    if (cluster := cluster_at_start(connect_url)) is not None:
        print(cluster, file=sys.stderr)
        return 2
    if not read_only and not allow_unsafe and _evicting_server(connect_url):
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
