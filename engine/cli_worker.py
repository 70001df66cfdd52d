"""``corral worker MODULE:FUNCTION``: run a worker process until SIGTERM/SIGINT.

The first signal starts a graceful shutdown (stop taking jobs, let running ones finish within
the grace period, hand back the rest); a second signal hands everything back at once.
Exit status: 0 after a clean shutdown, 3 when unfinished jobs were handed back to the queue,
2 for a bad processor or configuration, 4 when a guard (``--max-jobs``, ``--max-memory``)
recycled the worker: it finished its jobs (handing back any still running after the grace
period) so that a supervisor can start a fresh process; ``--supervise`` is such a supervisor
(``engine.supervisor``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from . import gc_policy, loops
from .connection import TlsOptions
from .errors import EngineError, InvalidJobOptions
from .job_types import JobTypes
from .policies import ErrorPolicy
from .processing import Processor
from .supervisor import EXIT_RECYCLED, restarts_from_env, supervise
from .worker import Worker

log = logging.getLogger("corral.worker")

EXIT_HANDED_BACK = 3
EXIT_USAGE = 2


def import_object(target: str) -> Any:
    """Import ``module:name`` (the current directory is importable, as with ``python -m``)."""
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    found: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


def load_processor(target: str) -> Processor:
    """Import the processor ``module:function``."""
    processor = import_object(target)
    if not callable(processor):
        raise TypeError(f"{target} is not callable")
    return processor  # type: ignore[no-any-return]


def load_types(target: str) -> JobTypes:
    """Import the ``JobTypes`` registry named by ``module:name``."""
    types = import_object(target)
    if not isinstance(types, JobTypes):
        raise TypeError(f"{target} is {type(types).__name__}, not a JobTypes")
    return types


def load_policies(args: argparse.Namespace) -> dict[str, Any]:
    """``error_policy`` and ``job_error_policies`` from ``--error-policy`` and
    ``--job-error-policies`` (each ``module:name``), checked for their types."""
    options: dict[str, Any] = {}
    if getattr(args, "error_policy", None):
        policy = import_object(args.error_policy)
        if not isinstance(policy, ErrorPolicy):
            raise TypeError(f"{args.error_policy} is {type(policy).__name__}, not an ErrorPolicy")
        options["error_policy"] = policy
    if getattr(args, "job_error_policies", None):
        named = import_object(args.job_error_policies)
        if not isinstance(named, Mapping) or not all(
            isinstance(k, str) and isinstance(v, ErrorPolicy) for k, v in named.items()
        ):
            raise TypeError(f"{args.job_error_policies} is not a dict of job name -> ErrorPolicy")
        options["job_error_policies"] = dict(named)
    return options


def connection_url(args: argparse.Namespace) -> str:
    """``--redis`` with the ``--tls-*`` options (``ValueError`` names a bad one)."""
    tls = TlsOptions.from_namespace(args)
    url = tls.apply(args.redis)
    if tls.insecure:
        log.warning("--tls-insecure: the server's certificate and host name are NOT verified")
    return url


def _worker_options(args: argparse.Namespace) -> dict[str, Any]:
    names = {
        "lock_duration": "lock_duration",
        "stalled_interval": "stalled_interval",
        "max_stalled_count": "max_stalled_count",
        "shutdown_grace": "shutdown_grace",
        "metrics_window": "metrics_window",
        "timeout_ms": "timeout_ms",
        "dead_letter": "dead_letter",
    }
    options = {
        option: getattr(args, attr)
        for option, attr in names.items()
        if getattr(args, attr, None) is not None
    }
    limit_max, limit_ms = getattr(args, "limit_max", None), getattr(args, "limit_duration", None)
    if (limit_max is None) != (limit_ms is None):
        raise InvalidJobOptions("--limit-max and --limit-duration go together")
    if limit_max is not None:
        options["limiter"] = {"max": limit_max, "duration": limit_ms}
    return options


async def serve(worker: Worker) -> int:
    """Run ``worker`` with signal handlers installed; return the process exit status."""
    loop = asyncio.get_running_loop()
    signals_seen = 0
    closing: set[asyncio.Future[None]] = set()

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        name = signal.Signals(signum).name
        if signals_seen == 1:
            log.info("%s: finishing running jobs (signal again to hand them back now)", name)
            closing.add(asyncio.ensure_future(worker.close()))
        else:
            log.info("%s: handing back running jobs now", name)
            closing.add(asyncio.ensure_future(worker.close(force=True)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await worker.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if worker.recycled:
        return EXIT_RECYCLED
    return EXIT_HANDED_BACK if worker.handed_back else 0


def run_worker(args: argparse.Namespace) -> int:
    """Entry point of ``corral worker``."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "supervise", False):
        return supervise(args.argv)
    try:
        processor = load_processor(args.target)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"corral worker: cannot load processor {args.target!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    types = None
    if getattr(args, "types", None):
        try:
            types = load_types(args.types)
        except (ImportError, AttributeError, TypeError) as exc:
            print(f"corral worker: cannot load job types {args.types!r}: {exc}", file=sys.stderr)
            return EXIT_USAGE

    try:
        policies = load_policies(args)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"corral worker: cannot load error policies: {exc}", file=sys.stderr)
        return EXIT_USAGE

    try:
        url = connection_url(args)
    except ValueError as exc:
        print(f"corral worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    allow_unsafe = bool(getattr(args, "allow_unsafe_eviction", False))
    if allow_unsafe:
        log.warning(
            "--allow-unsafe-eviction: the server's maxmemory-policy is not enforced; if it "
            "evicts keys, jobs can be lost without a trace"
        )

    # --sandbox N: N children (0 = one per concurrency slot), and concurrency N unless given
    sandbox: int | None = getattr(args, "sandbox", None)
    concurrency: int = args.concurrency or sandbox or 1

    async def main() -> int:
        worker = Worker(
            args.queue,
            processor,
            url,
            prefix=args.prefix,
            allow_unsafe_eviction=allow_unsafe,
            concurrency=concurrency,
            types=types,
            sandbox=False if sandbox is None else (sandbox or True),
            max_jobs=getattr(args, "max_jobs", None),
            max_memory=getattr(args, "max_memory", None),
            restarts=restarts_from_env(),
            **policies,
            **_worker_options(args),
        )
        health = None
        if getattr(args, "health_port", None):
            from .health_server import HealthServer  # prometheus-client only when asked

            try:
                health = await HealthServer(worker, args.health_port).start()
            except OSError as exc:
                print(f"corral worker: --health-port {args.health_port}: {exc}", file=sys.stderr)
                return EXIT_USAGE
            log.info("health: http://127.0.0.1:%d/healthz and /metrics", args.health_port)
        log.info(
            "worker %s on queue %r (concurrency %d%s)",
            worker.id,
            args.queue,
            concurrency,
            "" if sandbox is None else f", sandboxed in {sandbox or concurrency} processes",
        )
        try:
            return await serve(worker)
        finally:
            if health is not None:
                await health.close()

    gc_policy.settle()  # the processor's module is imported: freeze what start-up made
    try:
        return loops.run(main(), getattr(args, "loop", "asyncio"))
    except EngineError as exc:
        print(f"corral worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
