"""``corral breaker reset|remove QUEUE``: the operator's override of a queue's circuit breaker
from a shell (as ``b``/``B`` in the dashboard): close it now, or take it off the queue.

Prints one line saying what happened; exits 0, or 2 when the server cannot be reached or the
queue does not exist.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from corral import cli
from engine.connection import TRANSIENT_ERRORS, make_client
from engine.health import queue_exists
from engine.keys import DEFAULT_PREFIX, QueueKeys
from engine.queue import Queue

_UNREACHABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError)


def configure_breaker(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral breaker``."""
    parser.add_argument(
        "action", choices=("reset", "remove"), help="reset: close it now; remove: take it off"
    )
    parser.add_argument("queue", type=cli.queue_name, metavar="QUEUE")
    parser.add_argument(
        "--redis",
        default=cli._redis_url_default(),
        metavar="URL",
        help=f"server URL (default: ${cli.REDIS_URL_ENV} or {cli.DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--prefix", type=cli.key_prefix, default=DEFAULT_PREFIX, metavar="P")


def run_breaker(args: argparse.Namespace) -> int:
    """Entry point of ``corral breaker``."""
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    client, _ = make_client(args.redis, retry=None, socket_timeout=10)
    try:
        if not await queue_exists(client, QueueKeys(args.queue, args.prefix)):
            print(f"corral breaker: queue {args.queue!r} not found", file=sys.stderr)
            return 2
        queue = Queue(args.queue, client, prefix=args.prefix)
        if args.action == "reset":
            changed = await queue.reset_breaker()
            print(
                f"{args.queue}: circuit breaker closed"
                if changed
                else f"{args.queue}: circuit breaker was not open (nothing changed)"
            )
        else:
            changed = await queue.remove_breaker()
            print(
                f"{args.queue}: circuit breaker removed"
                if changed
                else f"{args.queue}: no circuit breaker (nothing changed)"
            )
        return 0
    except _UNREACHABLE as exc:
        print(f"corral breaker: server unreachable: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
