"""The alert threshold flags shared by ``corral check`` and ``corral dash``, and the
``engine.health.Thresholds`` they make."""

from __future__ import annotations

import argparse

from corral import cli
from engine.health import Thresholds


def add_threshold_flags(parser: argparse.ArgumentParser, title: str) -> None:
    """``--max-failed``, ``--window``, ``--max-waiting``, ``--max-wait-age``, ``--max-stalled``
    and ``--min-workers`` in a group named ``title``."""
    limits = parser.add_argument_group(title)
    limits.add_argument(
        "--max-failed",
        type=cli.non_negative_int,
        metavar="N",
        help="jobs failed for good in the last --window minutes",
    )
    limits.add_argument(
        "--window",
        type=cli.positive_int,
        default=15,
        metavar="MIN",
        help="minutes looked back for failed and stalled jobs (default 15)",
    )
    limits.add_argument(
        "--max-waiting", type=cli.non_negative_int, metavar="N", help="ready jobs not running"
    )
    limits.add_argument(
        "--max-wait-age",
        type=cli.non_negative_float,
        metavar="S",
        help="seconds the next job to run has been waiting",
    )
    limits.add_argument(
        "--max-stalled",
        type=cli.non_negative_int,
        metavar="N",
        help="jobs stalled now or in the window (0: any stalled job is a breach)",
    )
    limits.add_argument(
        "--min-workers", type=cli.non_negative_int, metavar="N", help="live workers per queue"
    )


def thresholds_from(args: argparse.Namespace) -> Thresholds:
    """The thresholds the flags set (``Thresholds.any`` is False when none was given)."""
    age = args.max_wait_age
    return Thresholds(
        max_failed=args.max_failed,
        window_ms=args.window * 60_000,
        max_waiting=args.max_waiting,
        max_wait_age_ms=None if age is None else int(age * 1000),
        max_stalled=args.max_stalled,
        min_workers=args.min_workers,
    )
