"""Node BullMQ as a benchmark subject: installed with npm into ``bench/.peers/node`` (ignored by
git) and driven through ``bench/peers/bullmq.js``, which prints one JSON result per run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench.script_subject import ScriptSubject, bull_jobs_left

BENCH_DIR = Path(__file__).resolve().parent
NODE_DIR = BENCH_DIR / ".peers" / "node"
SCRIPT = BENCH_DIR / "peers" / "bullmq.js"
# BullMQ 6 takes its Redis client as an optional peer dependency: ioredis is its default.
PACKAGES = {"bullmq": "6.7.0", "ioredis": "5.11.1"}


class PeerUnavailable(RuntimeError):
    """The peer cannot be installed or run here (no node/npm, or npm failed)."""


def _installed_version(package: str) -> str | None:
    manifest = NODE_DIR / "node_modules" / package / "package.json"
    try:
        version = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


def ensure_node_peer() -> dict[str, str]:
    """Install the pinned packages unless present; return ``{package: version}`` installed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise PeerUnavailable("node and npm are needed for the BullMQ peer")
    if any(_installed_version(name) != version for name, version in PACKAGES.items()):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        manifest = NODE_DIR / "package.json"
        if not manifest.exists():
            manifest.write_text('{"name": "corral-bench-peers", "private": true}\n')
        specs = [f"{name}@{version}" for name, version in PACKAGES.items()]
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", *specs],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PeerUnavailable(f"npm install failed:\n{done.stderr[-2000:]}")
    return {name: _installed_version(name) or "?" for name in PACKAGES}


def node_version() -> str:
    """``node --version`` without the leading ``v``."""
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().lstrip("v")


class NodeBullMQ(ScriptSubject):
    """BullMQ in Node: every scenario is one run of ``bullmq.js``."""

    label = "BullMQ (Node)"

    def __init__(self, url: str) -> None:
        env = {"NODE_PATH": str(NODE_DIR / "node_modules")}
        super().__init__(url, ["node", str(SCRIPT)], BENCH_DIR, env)

    async def remaining(self, jobs: int) -> int:
        return await bull_jobs_left(self.client)
