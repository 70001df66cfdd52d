"""The Python peers: the official Python port of BullMQ, RQ and arq.

Each is installed from PyPI, pinned, into its own virtual environment under
``bench/.peers/python/<name>`` (ignored by git; created only when missing or out of date), with
hiredis as Corral has it, so their redis-py versions never meet Corral's or each other's. Each is
driven through ``bench/peers/py_<name>.py`` run by that environment's interpreter, in its own
processes, on the harness's server.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import ClassVar

from bench.peers import BENCH_DIR, PeerUnavailable
from bench.script_subject import ScriptSubject, bull_jobs_left
from bench.subjects import QUEUE, Limits

PYTHON_DIR = BENCH_DIR / ".peers" / "python"
SCRIPTS_DIR = BENCH_DIR / "peers"
HIREDIS = "3.5.0"
SLOW_SHARE = 0.1
"""Share of the jobs a processing run uses for peers that take seconds per hundred jobs."""
SAME_CLIENT = (
    "not measured: the peer's client is redis-py (a pooled connection per concurrent call)"
)


@dataclass(frozen=True, slots=True)
class PythonPeer:
    """One pinned package, its environment and its driver script."""

    name: str
    package: str
    version: str

    @property
    def venv(self) -> Path:
        """``bench/.peers/python/<name>``."""
        return PYTHON_DIR / self.name

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.venv / "bin" / "python"

    @property
    def script(self) -> Path:
        """``bench/peers/py_<name>.py``."""
        return SCRIPTS_DIR / f"py_{self.name}.py"

    def installed(self) -> dict[str, str]:
        """``{distribution: version}`` installed in the environment (empty if none)."""
        found: dict[str, str] = {}
        for site in self.venv.glob("lib/python*/site-packages"):
            for dist in metadata.distributions(path=[str(site)]):
                found[dist.metadata["Name"].lower()] = dist.version
        return found

    def ensure(self) -> dict[str, str]:
        """Create the environment and install the pins unless present; return the versions of
        the package, redis-py and hiredis in it. ``PeerUnavailable`` if pip fails."""
        wanted = {self.package: self.version, "hiredis": HIREDIS}
        have = self.installed()
        same_python = (
            self.venv / f"lib/python{sys.version_info[0]}.{sys.version_info[1]}"
        ).is_dir()
        if not same_python or any(have.get(name) != version for name, version in wanted.items()):
            self._install(wanted, fresh=not same_python)
            have = self.installed()
        return {name: have.get(name, "?") for name in (self.package, "redis", "hiredis")}

    def _install(self, wanted: dict[str, str], fresh: bool) -> None:
        steps = []
        if fresh or not self.python.exists():
            steps.append([sys.executable, "-m", "venv", "--clear", str(self.venv)])
        specs = [f"{name}=={version}" for name, version in wanted.items()]
        pip = [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        steps.append([*pip, *specs])
        for argv in steps:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise PeerUnavailable(f"{' '.join(argv[:4])} failed:\n{done.stderr[-2000:]}")


BULLMQ = PythonPeer("bullmq", "bullmq", "3.4.4")
RQ = PythonPeer("rq", "rq", "3.0.0")
ARQ = PythonPeer("arq", "arq", "0.28.0")


class PythonSubject(ScriptSubject):
    """A peer run by its environment's interpreter with its ``py_<name>.py`` script."""

    peer: ClassVar[PythonPeer]

    def __init__(self, url: str) -> None:
        # -u: results and protocol lines are never held in a buffer
        command = [str(self.peer.python), "-u", str(self.peer.script)]
        super().__init__(url, command, SCRIPTS_DIR, {})


class PythonBullMQ(PythonSubject):
    """The official Python port of BullMQ: same Lua scripts and keys as Node's."""

    label = "BullMQ (Python)"
    peer = BULLMQ
    limits = Limits(unsupported={"ceiling": SAME_CLIENT})

    async def remaining(self, jobs: int) -> int:
        return await bull_jobs_left(self.client)


class RQSubject(PythonSubject):
    """RQ with its default forking worker: one job at a time per worker process."""

    label = "RQ"
    peer = RQ
    limits = Limits(
        unsupported={
            "process-c50": "no concurrency within one worker process",
            "ceiling": SAME_CLIENT,
        },
        process_share={"process": SLOW_SHARE},
        notes=(
            "default `Worker` (a work horse process per job, as `rq worker` runs); the latency "
            "run uses that one worker, since RQ has no concurrency within a worker process",
        ),
    )

    async def remaining(self, jobs: int) -> int:
        # queued; moved to the intermediate list by the worker's LMOVE; then in the started
        # registry until the job is finished
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.llen(f"rq:queue:{QUEUE}")
            pipe.llen(f"rq:queue:{QUEUE}:intermediate")
            pipe.zcard(f"rq:wip:{QUEUE}")
            replies = await pipe.execute()
        return sum(int(count) for count in replies)


class ArqSubject(PythonSubject):
    """arq with ``poll_delay`` 0.01 s instead of its default 0.5 s."""

    label = "arq"
    peer = ARQ
    limits = Limits(
        unsupported={"bulk": "no bulk add", "ceiling": SAME_CLIENT},
        process_share={"process-c1-": SLOW_SHARE},
        notes=(
            "worker `poll_delay=0.01` (default 0.5 s: one job per poll at concurrency 1, so "
            "2 jobs/s); jobs are enqueued one call each, arq has no bulk add",
        ),
    )

    async def remaining(self, jobs: int) -> int:
        # a job stays in the queue's sorted set until the call that finishes it
        return int(await self.client.zcard(f"arq:queue:{QUEUE}"))


PEERS: dict[str, type[PythonSubject]] = {
    "bullmq-py": PythonBullMQ,
    "rq": RQSubject,
    "arq": ArqSubject,
}
"""Short name (``--peer``) -> subject."""
