"""``python -m bench``: run the scenarios for Corral and its peers and print the table."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from bench import peers, python_peers, report
from bench.corral import CorralSubject
from bench.dashboard import DashSettings
from bench.scenarios import Settings, metrics, run_all, selected_scenarios
from bench.server import BenchServer
from bench.subjects import Subject
from bench.tools import ensure_tools

DOCS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
PEER_NAMES = ("node", *python_peers.PEERS)
BULL_DASH = "dash-bullmq"
"""The scenarios whose load is Node BullMQ: they need node and npm, whatever ``--peer`` says."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Corral against Node BullMQ, the Python BullMQ port, RQ and arq.",
    )
    parser.add_argument("--runs", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per run (default 20000)")
    parser.add_argument("--chunk", type=int, default=1000, help="bulk chunk size")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2000 jobs, 1 run, short timings"
    )
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="skip the Node BullMQ peer (and the dash-bullmq scenarios, whose load is Node)",
    )
    parser.add_argument(
        "--no-python", action="store_true", help="skip the Python peers (BullMQ port, RQ, arq)"
    )
    parser.add_argument(
        "--peer",
        action="append",
        choices=PEER_NAMES,
        help="run only these peers beside Corral (repeatable; default: all)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help="run only scenarios starting with this (add, bulk, process, latency, ceiling, dash;"
        " dash-load, dash-bullmq, dash-screen, dash-big)",
    )
    dash = parser.add_argument_group("dashboard scenarios (dash-*)")
    dash.add_argument(
        "--dash-rate",
        type=float,
        help="jobs/s to aim at, by the engine or by Node BullMQ (default 5000)",
    )
    dash.add_argument("--dash-producers", type=int, help="producer processes (default 1)")
    dash.add_argument("--dash-workers", type=int, help="worker processes, c=50 (default 2)")
    dash.add_argument("--big-jobs", type=int, help="jobs in the big queue (default 1000000)")
    parser.add_argument(
        "--write-docs",
        choices=("auto", "yes", "no"),
        default="auto",
        help="rewrite docs/performance.md (auto: not for --quick or --only runs)",
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Sizes and durations for this run."""
    if args.quick:
        base = Settings(
            jobs=2_000,
            runs=1,
            latency_seconds=2.0,
            ceiling_seconds=1.0,
            process_timeout=120.0,
            dash=DashSettings(seconds=4.0, changes=15, big_jobs=100_000, pages=3),
        )
    else:
        base = Settings()
    dash = base.dash
    return Settings(
        jobs=args.jobs or base.jobs,
        chunk=args.chunk,
        runs=args.runs or base.runs,
        latency_seconds=base.latency_seconds,
        ceiling_seconds=base.ceiling_seconds,
        process_timeout=base.process_timeout,
        dash=DashSettings(
            rate=args.dash_rate or dash.rate,
            producers=args.dash_producers or dash.producers,
            workers=args.dash_workers or dash.workers,
            seconds=dash.seconds,
            changes=dash.changes,
            big_jobs=args.big_jobs or dash.big_jobs,
            pages=dash.pages,
        ),
    )


def without(settings: Settings, only: Sequence[str] | None, prefix: str) -> list[str]:
    """``--only`` prefixes that keep what ``only`` kept but the scenarios starting with
    ``prefix`` (``["none"]``, which matches no scenario, when nothing is left)."""
    kept = [n for n in selected_scenarios(settings, only) if not n.startswith(prefix)]
    return kept or ["none"]


def _wanted(args: argparse.Namespace, name: str) -> bool:
    if args.peer:
        return name in args.peer
    return not (args.no_node if name == "node" else args.no_python)


def peer_subjects(args: argparse.Namespace, url: str) -> tuple[list[Subject], dict[str, str]]:
    """Install (if needed) and build the selected peers; a peer that cannot be installed is
    skipped with a message. Returns the subjects and a version line per peer."""
    subjects: list[Subject] = []
    versions: dict[str, str] = {}
    if _wanted(args, "node"):
        try:
            installed = peers.ensure_node_peer()
        except peers.PeerUnavailable as exc:
            print(f"BullMQ (Node) skipped: {exc}", file=sys.stderr)
        else:
            subjects.append(peers.NodeBullMQ(url))
            versions["BullMQ (Node)"] = ", ".join(
                [f"Node {peers.node_version()}"]
                + [f"{name} {version}" for name, version in installed.items()]
            )
    for name, subject_class in python_peers.PEERS.items():
        if not _wanted(args, name):
            continue
        try:
            installed = subject_class.peer.ensure()
        except peers.PeerUnavailable as exc:
            print(f"{subject_class.label} skipped: {exc}", file=sys.stderr)
            continue
        subjects.append(subject_class(url))
        versions[subject_class.label] = f"Python {platform.python_version()}, " + ", ".join(
            f"{dist} {version}" for dist, version in installed.items()
        )
    return subjects, versions


def dash_prerequisites(
    args: argparse.Namespace, settings: Settings, environment: dict[str, str]
) -> list[str] | None:
    """Get what the selected dashboard scenarios need (pyte; Node BullMQ for ``dash-bullmq``),
    noting versions in ``environment``; return the ``--only`` prefixes to run, without the
    scenarios whose needs are missing (with a message)."""
    only: list[str] | None = args.only
    if any(name.startswith("dash") for name in selected_scenarios(settings, only)):
        try:
            tools = ensure_tools()
        except peers.PeerUnavailable as exc:
            print(f"dashboard scenarios skipped: {exc}", file=sys.stderr)
            only = without(settings, only, "dash")
        else:
            environment["dashboard"] = (
                f"textual {metadata.version('textual')}, measured through pyte {tools['pyte']}"
            )
    if any(name.startswith(BULL_DASH) for name in selected_scenarios(settings, only)):
        try:
            if args.no_node:
                raise peers.PeerUnavailable("--no-node")
            installed = peers.ensure_node_peer()
        except peers.PeerUnavailable as exc:
            print(f"{BULL_DASH} scenarios skipped: {exc}", file=sys.stderr)
            only = without(settings, only, BULL_DASH)
        else:
            environment["dashboard load on BullMQ"] = ", ".join(
                [f"Node {peers.node_version()}"]
                + [f"{name} {version}" for name, version in installed.items()]
            )
    return only


async def main(args: argparse.Namespace) -> int:
    """Run everything; return the exit status."""
    settings = settings_from(args)
    async with BenchServer() as server:
        subjects: list[Subject] = [CorralSubject(server.url)]
        environment = {
            "machine": (
                f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
                f"1-minute load average {os.getloadavg()[0]:.2f} at the start"
            ),
            "server": f'{await server.version()} (`--save "" --appendonly no`, 127.0.0.1)',
            "Corral": (
                f"Python {platform.python_version()}, redis-py {metadata.version('redis')}, "
                f"hiredis {metadata.version('hiredis')}"
            ),
        }
        others, versions = peer_subjects(args, server.url)
        subjects += others
        environment.update(versions)
        only = dash_prerequisites(args, settings, environment)
        try:
            results = await run_all(subjects, server, settings, only)
        finally:
            for subject in subjects:
                await subject.close()
    limits = {subject.label: subject.limits for subject in subjects}
    rows = metrics(settings)
    samples = results.samples
    if report.has_rows(rows, samples, "main"):
        print("\n" + report.table(rows, samples, limits, "main"))
        if len(subjects) > 1:
            print("\n" + report.ratio_table(rows, samples, limits))
    if report.has_rows(rows, samples, "cpu"):
        print("\n" + report.table(rows, samples, limits, "cpu"))
    if report.has_rows(rows, samples, "dash"):
        print("\n" + report.dash_table(rows, samples, subjects[0].label))
    described = report.notes(limits, results.failures)
    if described:
        print()
        print(described)
    write = args.write_docs == "yes" or (
        args.write_docs == "auto" and not args.quick and not args.only
    )
    if write:
        command = shlex.join(["python", "-m", "bench", *sys.argv[1:]])
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        generated = report.section(command, date, environment, rows, results, limits, settings.runs)
        report.write_docs(DOCS, generated)
        print(f"\nwrote {DOCS.relative_to(DOCS.parent.parent)}", file=sys.stderr)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(None))))
