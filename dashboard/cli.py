"""``corral dash``: ``run_dash(args)`` builds the backend and runs the dashboard (the flags are
defined with the other commands in ``corral.cli``)."""

from __future__ import annotations

import argparse
import os
import sys

from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.sanitize import mask_url
from engine.connection import DEFAULT_URL
from engine.keys import validate_queue_name


def run_dash(args: argparse.Namespace) -> int:
    """Run the dashboard until the user quits; the exit status (2 for bad arguments)."""
    url = args.redis or os.environ.get("REDIS_URL") or DEFAULT_URL
    try:
        queues = [validate_queue_name(name) for name in args.queues or []]
        backend = CorralBackend(args.prefix)
    except ValueError as exc:
        print(f"corral dashboard: {exc}", file=sys.stderr)
        return 2
    app = DashboardApp(url, backend, queues=queues, read_only=bool(args.read_only))
    app.title = f"Corral {mask_url(url)}"
    app.run()
    return 0
