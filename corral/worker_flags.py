"""Flags of ``corral worker`` for sandboxing, guards and health (``engine.cli_worker`` reads
them), kept apart from ``corral.cli`` so that module stays a short registry."""

from __future__ import annotations

import argparse

from corral import cli


def configure_worker_extras(parser: argparse.ArgumentParser) -> None:
    """Add the sandbox flags to ``corral worker``."""
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
