"""The ``corral`` command line: argparse subcommands kept in one registry, ``COMMANDS``.

Each subcommand is a ``Command``: a function that adds its flags to a subparser, and a handler
that gets the parsed ``Namespace`` and returns an exit status. Handlers of the heavy subcommands
(``worker``, ``dash``, ``demo``) are imported lazily, so ``corral --help`` and ``corral server``
never import the dashboard (nor Textual).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Final

from engine.keys import DEFAULT_PREFIX, validate_prefix, validate_queue_name

DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/0"
REDIS_URL_ENV: Final = "REDIS_URL"

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Command:
    """One ``corral`` subcommand: its name, one-line help, flags and handler."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Handler
    description: str | None = None


# -- argument types ---------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: expected >= {minimum}")
        return value

    return parse


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


def non_negative_float(text: str) -> float:
    """Parse a number of seconds that may be zero but not negative."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected a number >= 0")
    return value


def port_number(text: str) -> int:
    """Parse a TCP port, 1-65535."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"port {value} is invalid: expected 1-65535")
    return value


def queue_name(text: str) -> str:
    """Parse a queue name with the engine's own rules."""
    try:
        return validate_queue_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def key_prefix(text: str) -> str:
    """Parse a key prefix with the engine's own rules."""
    try:
        return validate_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def import_target(text: str) -> str:
    """Check that ``text`` looks like ``package.module:function`` (it is imported later)."""
    module, sep, func = text.partition(":")
    if (
        not sep
        or not module
        or not func
        or not all(part.isidentifier() for part in [*module.split("."), *func.split(".")])
    ):
        raise argparse.ArgumentTypeError(
            f"{text!r} is invalid: expected MODULE:FUNCTION, e.g. myapp.tasks:send_email"
        )
    return text


def _redis_url_default() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


# -- lazy handlers ----------------------------------------------------------------------------


def lazy(target: str) -> Handler:
    """A handler that imports ``module:function`` only when the subcommand runs.

    The function gets the ``Namespace``; it may return an exit status, ``None`` (meaning 0) or a
    coroutine, which is run with ``asyncio.run``.
    """
    module_name, _, func_name = target.partition(":")

    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if not (module_name == missing or module_name.startswith(missing + ".")):
                raise
            print(
                f"corral {args.command}: not available ({module_name} is missing)", file=sys.stderr
            )
            return 2
        result: object = getattr(module, func_name)(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        if result is None:
            return 0
        if isinstance(result, bool) or not isinstance(result, int):
            raise TypeError(f"{target} returned {result!r}, expected an exit status or None")
        return result

    run.__name__ = run.__qualname__ = f"lazy_{func_name}"
    return run


# -- corral server ----------------------------------------------------------------------------


def configure_server(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral server``."""
    parser.add_argument(
        "--port", type=port_number, default=None, help="TCP port on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument(
        "--persistence",
        choices=["none", "aof-everysec", "aof-always"],
        default="none",
        help="append-only file mode (default: none, data is lost on exit)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        metavar="PATH",
        help="data directory for the AOF and the log (default: a temporary one, removed on exit)",
    )


def run_server(args: argparse.Namespace) -> int:
    """Run the embedded server in the foreground until SIGINT or SIGTERM; print its URL first."""
    from engine.server import EmbeddedServer, ServerError

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server: EmbeddedServer | None = None
    try:
        server = EmbeddedServer(port=args.port, data_dir=args.dir, persistence=args.persistence)
        server.start()
        print(server.url, flush=True)
        print(
            f"corral server: pid {server.pid}, persistence {server.persistence}, "
            f"dir {server.data_dir}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.25):
            if not server.is_running:
                print(
                    f"corral server: the server exited with status {server.returncode}; "
                    f"see {server.log_path}",
                    file=sys.stderr,
                )
                return 1
        return 0
    except ServerError as exc:
        print(f"corral server: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- connection flags shared by worker and dash -----------------------------------------------


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    """``--tls-ca-cert``, ``--tls-cert``, ``--tls-key`` and ``--tls-insecure`` for a
    ``rediss://`` URL (``engine.connection.TlsOptions`` reads them)."""
    tls = parser.add_argument_group(
        "TLS (with a rediss:// URL; the server's certificate and host name are verified)"
    )
    tls.add_argument(
        "--tls-ca-cert",
        default=None,
        metavar="PATH",
        help="PEM file of the CA that signed the server's certificate (default: the system CAs)",
    )
    tls.add_argument(
        "--tls-cert",
        default=None,
        metavar="PATH",
        help="PEM client certificate, for a server that asks for one (mutual TLS)",
    )
    tls.add_argument(
        "--tls-key", default=None, metavar="PATH", help="the client certificate's private key"
    )
    tls.add_argument(
        "--tls-insecure",
        action="store_true",
        help="DANGEROUS: do not verify the server's certificate or host name; the link is "
        "encrypted but anyone in the middle can read it, passwords included",
    )


# -- corral worker / dash / demo (flags here, handlers elsewhere) -----------------------------


def configure_worker(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral worker``; ``engine.cli_worker.run_worker`` gets the Namespace."""
    parser.add_argument(
        "target",
        type=import_target,
        metavar="MODULE:FUNCTION",
        help="the job processor, an async function taking a job",
    )
    parser.add_argument("--queue", type=queue_name, required=True, metavar="NAME")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="jobs run at once (default: 1, or N with --sandbox N)",
    )
    parser.add_argument(
        "--redis",
        default=_redis_url_default(),
        metavar="URL",
        help=f"server URL (default: ${REDIS_URL_ENV} or {DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--prefix", type=key_prefix, default=DEFAULT_PREFIX, metavar="P")
    parser.add_argument(
        "--allow-unsafe-eviction",
        action="store_true",
        help="run even when the server's maxmemory-policy is not noeviction: such a server may "
        "evict job keys under memory pressure and silently lose jobs",
    )
    add_tls_flags(parser)
    parser.add_argument(
        "--types",
        type=import_target,
        default=None,
        metavar="MODULE:NAME",
        help="a JobTypes registry: registered jobs' data is checked and given as job.typed",
    )
    parser.add_argument(
        "--error-policy",
        type=import_target,
        default=None,
        metavar="MODULE:NAME",
        help="an ErrorPolicy for the queue: which errors retry, which fail at once, backoffs",
    )
    parser.add_argument(
        "--job-error-policies",
        type=import_target,
        default=None,
        metavar="MODULE:NAME",
        help="a dict of job name -> ErrorPolicy, merged over --error-policy for those names",
    )
    from corral.worker_flags import configure_worker_extras  # sandbox, guards, health

    configure_worker_extras(parser)
    tunables = parser.add_argument_group("tuning (default: the engine's own defaults)")
    tunables.add_argument(
        "--lock-duration", type=positive_int, default=None, metavar="MS", help="job lock TTL"
    )
    tunables.add_argument(
        "--stalled-interval",
        type=positive_int,
        default=None,
        metavar="MS",
        help="how often to look for jobs whose lock expired",
    )
    tunables.add_argument(
        "--max-stalled-count",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="stalls allowed before a job fails",
    )
    tunables.add_argument(
        "--shutdown-grace",
        type=non_negative_float,
        default=None,
        metavar="S",
        help="seconds running jobs get to finish on SIGINT/SIGTERM",
    )
    tunables.add_argument(
        "--timeout-ms",
        type=non_negative_int,
        default=None,
        metavar="MS",
        help="fail an attempt that runs longer (a job's own timeout_ms wins; 0 = none)",
    )
    tunables.add_argument(
        "--dead-letter",
        type=queue_name,
        default=None,
        metavar="QUEUE",
        help="move jobs that failed for good to this queue (a job's own dead_letter wins)",
    )
    tunables.add_argument(
        "--metrics-window",
        type=non_negative_int,
        default=None,
        metavar="MS",
        help="how long per-minute metrics are kept (0 = record none)",
    )
    limits = parser.add_argument_group("rate limit, shared by every worker of the queue")
    limits.add_argument(
        "--limit-max", type=positive_int, default=None, metavar="N", help="jobs per window"
    )
    limits.add_argument(
        "--limit-duration", type=positive_int, default=None, metavar="MS", help="window length"
    )


def configure_dash(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral dash``; ``dashboard.cli.run_dash`` gets the Namespace."""
    parser.add_argument(
        "--redis",
        default=_redis_url_default(),
        metavar="URL",
        help=f"server URL (default: ${REDIS_URL_ENV} or {DEFAULT_REDIS_URL})",
    )
    # queue names and the prefix are checked by ``run_dash``: the rules depend on --bullmq
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=None,
        metavar="NAME",
        help="show this queue (repeatable; default: every queue found under the prefix)",
    )
    parser.add_argument(
        "--prefix",
        default=None,
        metavar="P",
        help=f"key prefix (default: {DEFAULT_PREFIX}, or bull with --bullmq)",
    )
    parser.add_argument(
        "--read-only", action="store_true", help="hide actions that change jobs or queues"
    )
    parser.add_argument(
        "--allow-unsafe-eviction",
        action="store_true",
        help="act (write mode) even when the server's maxmemory-policy is not noeviction: "
        "such a server may evict job keys and silently lose jobs",
    )
    parser.add_argument(
        "--stuck-after",
        default=None,
        metavar="AGE",
        help="on the stalled screen, a job active longer than this is stuck (90s, 5m, 2h;"
        " default 5m)",
    )
    parser.add_argument(
        "--password-file",
        default=None,
        metavar="PATH",
        help="read the server password from this file (mode 600); else $CORRAL_REDIS_PASSWORD,"
        " or a prompt when the URL names a user without one",
    )
    add_tls_flags(parser)
    parser.add_argument(
        "--bullmq",
        action="store_true",
        help="open BullMQ queues (v5 and v6, Node or Python) instead of Corral's",
    )
    parser.add_argument(
        "--bell", action="store_true", help="ring the terminal bell when a new breach appears"
    )
    from corral.threshold_flags import add_threshold_flags  # imports engine.health

    add_threshold_flags(parser, "alert thresholds (as corral check; breaches show as alerts)")


def configure_demo(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral demo``; ``corral.demo.run_demo`` gets the Namespace."""
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help=f"use this server (default: ${REDIS_URL_ENV}, else a private one started on "
        f"127.0.0.1; a server merely running on {DEFAULT_REDIS_URL} is not used). A URL "
        f"with a password is better given in ${REDIS_URL_ENV}: ps shows command lines",
    )
    parser.add_argument(
        "--no-dash",
        action="store_true",
        help="run the workload only and print the server URL (attach with 'corral dash')",
    )
    parser.add_argument(
        "--duration",
        type=non_negative_float,
        default=None,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C)",
    )


def configure_breaker(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral breaker`` (defined beside its handler)."""
    from corral.breaker_cli import configure_breaker as configure

    configure(parser)


def configure_check(parser: argparse.ArgumentParser) -> None:
    """Flags of ``corral check``, kept with its handler in ``corral.check``."""
    from corral.check import configure_check as configure

    configure(parser)


# -- registry and entry point -----------------------------------------------------------------

COMMANDS: Final[tuple[Command, ...]] = (
    Command(
        "server",
        "run a private Redis-compatible server on 127.0.0.1 in the foreground",
        configure_server,
        run_server,
        description="Start the bundled server, print its URL on the first line of stdout, and "
        "stop it cleanly on Ctrl-C or SIGTERM.",
    ),
    Command(
        "worker",
        "process jobs of one queue with a Python function",
        configure_worker,
        lazy("engine.cli_worker:run_worker"),
    ),
    Command(
        "check",
        "check queues against alert thresholds (exit 0 ok, 1 breach, 2 cannot check)",
        configure_check,
        lazy("corral.check:run_check"),
        description="Check queue health for cron or a monitoring system: one line per breach "
        "and exit status 1, an ok line and 0 when within thresholds, 2 when it cannot check.",
    ),
    Command(
        "breaker",
        "close (reset) or remove a queue's circuit breaker",
        configure_breaker,
        lazy("corral.breaker_cli:run_breaker"),
    ),
    Command(
        "dash", "open the live terminal dashboard", configure_dash, lazy("dashboard.cli:run_dash")
    ),
    Command(
        "demo",
        "run a sample workload (and the dashboard) against a private server",
        configure_demo,
        lazy("corral.demo:run_demo"),
    ),
)


def _version() -> str:
    try:
        return metadata.version("corral")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    parser = argparse.ArgumentParser(
        prog="corral", description="Corral: Redis-backed background jobs with a live dashboard."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.description or command.help
        )
        command.configure(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``corral``: parse ``argv`` and run the chosen subcommand."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a supervisor to rerun
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
