"""``corral check``: queue health against thresholds, for cron and monitoring systems.

Prints one line per breach (``QUEUE: what happened (limit N)``) and exits 1; prints one ``ok``
line and exits 0 when every queue is within its thresholds; exits 2 when it cannot check (no
threshold given, server unreachable, an unknown queue, no queue found). ``engine.health``
describes what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from corral import cli
from corral.threshold_flags import add_threshold_flags, thresholds_from
from engine.connection import TRANSIENT_ERRORS, make_client
from engine.health import Thresholds, check_queues, discover_queues, queue_exists
from engine.keys import DEFAULT_PREFIX, QueueKeys

EXIT_OK = 0
EXIT_BREACH = 1
EXIT_CANNOT_CHECK = 2
_UNREACHABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, OSError)


def configure_check(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral check``."""
    parser.add_argument(
        "--redis",
        default=cli._redis_url_default(),
        metavar="URL",
        help=f"server URL (default: ${cli.REDIS_URL_ENV} or {cli.DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--queue",
        action="append",
        type=cli.queue_name,
        default=None,
        metavar="NAME",
        help="check this queue (repeatable; default: every queue found under the prefix)",
    )
    parser.add_argument("--prefix", type=cli.key_prefix, default=DEFAULT_PREFIX, metavar="P")
    add_threshold_flags(parser, "thresholds (at least one; a breach is a value past it)")


def run_check(args: argparse.Namespace) -> int:
    """Entry point of ``corral check``."""
    limits = thresholds_from(args)
    if not limits.any:
        print(
            "corral check: cannot check: give at least one threshold (--max-failed, "
            "--max-waiting, --max-wait-age, --max-stalled, --min-workers)",
            file=sys.stderr,
        )
        return EXIT_CANNOT_CHECK
    return asyncio.run(_check(args, limits))


async def _check(args: argparse.Namespace, limits: Thresholds) -> int:
    client, _ = make_client(args.redis, retry=None, socket_timeout=10)
    try:
        queues = args.queue or await discover_queues(client, args.prefix)
        if not queues:
            return _cannot(f"no queues under prefix {args.prefix!r} at {_safe_url(args.redis)}")
        for queue in args.queue or []:
            if not await queue_exists(client, QueueKeys(queue, args.prefix)):
                return _cannot(f"queue {queue!r} not found under prefix {args.prefix!r}")
        healths, found = await check_queues(client, queues, limits, args.prefix)
    except _UNREACHABLE as exc:
        return _cannot(f"server {_safe_url(args.redis)} unreachable: {exc}")
    except Exception as exc:  # a wrong password, a non-Redis server...
        return _cannot(f"{type(exc).__name__}: {exc}")
    finally:
        await client.aclose()
    for breach in found:
        print(breach)
    if found:
        return EXIT_BREACH
    print(f"ok: {len(healths)} queue(s) within thresholds")
    return EXIT_OK


def _cannot(reason: str) -> int:
    print(f"corral check: cannot check: {reason}", file=sys.stderr)
    return EXIT_CANNOT_CHECK


def _safe_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _credentials = head.partition("://")
    return f"{scheme}://***@{tail}"
