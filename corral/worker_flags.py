"""Flags of ``corral worker`` for sandboxing, guards and health (``engine.cli_worker`` reads
them), kept apart from ``corral.cli`` so that module stays a short registry."""

from __future__ import annotations

import argparse

from corral import cli
from engine.guards import parse_size
from engine.loops import LOOPS


def configure_worker_extras(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox, guard and supervisor flags to ``corral worker``."""
    sandbox = parser.add_argument_group("sandbox")
    sandbox.add_argument(
        "--sandbox",
        type=cli.non_negative_int,
        nargs="?",
        const=0,
        default=None,
        metavar="N",
        help="run the processor in N child processes (default N: the concurrency); a crash in "
        "a job kills only its child, which is replaced; sets the concurrency to N unless "
        "--concurrency is given",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop: asyncio (default) or uvloop (faster; asyncio's own where it is not "
        "installed; a connection reset can stop the worker, see engine/loops.py)",
    )
    guards = parser.add_argument_group("guards, supervision and health")
    guards.add_argument(
        "--max-jobs",
        type=cli.positive_int,
        default=None,
        metavar="N",
        help="take at most N jobs, finish them, then exit with status 4",
    )
    guards.add_argument(
        "--max-memory",
        type=memory_size,
        default=None,
        metavar="SIZE",
        help="finish running jobs and exit with status 4 once the worker's resident memory is "
        "over SIZE (512MB, 2G; with --sandbox a child over it is also replaced after its job)",
    )
    guards.add_argument(
        "--health-port",
        type=cli.port_number,
        default=None,
        metavar="P",
        help="serve /healthz (liveness) and /metrics (Prometheus) on 127.0.0.1:P",
    )
    guards.add_argument(
        "--supervise",
        action="store_true",
        help="run the worker as a child process and restart it whenever it exits (at once "
        "after a recycle, with back-off after a crash); restarts show in its heartbeat",
    )


def memory_size(text: str) -> int:
    """Parse ``512MB``, ``2G`` or a number of bytes."""
    try:
        return parse_size(text, "--max-memory")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
