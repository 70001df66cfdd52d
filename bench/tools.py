"""Tools the harness itself needs beyond Corral's runtime dependencies: today only ``pyte``, a
terminal emulator that turns the dashboard's output into the screen a person sees. Taken from
this environment when it has them, else installed on first use with pip into
``bench/.peers/python/tools`` (ignored by git) and put on ``sys.path``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import metadata

from bench.peers import BENCH_DIR, PeerUnavailable

TOOLS_DIR = BENCH_DIR / ".peers" / "python" / "tools"
PINS = {"pyte": "0.8.2"}


def _installed() -> dict[str, str]:
    return {
        dist.metadata["Name"].lower(): dist.version
        for dist in metadata.distributions(path=[str(TOOLS_DIR)])
    }


def ensure_tools() -> dict[str, str]:
    """Use the tools of this environment if it has them (the ``test`` extra installs pyte);
    else install the pins unless present and put them on ``sys.path``. Returns
    ``{name: version}``; ``PeerUnavailable`` if pip fails."""
    if all(importlib.util.find_spec(name) is not None for name in PINS):
        return {name: metadata.version(name) for name in PINS}
    if any(_installed().get(name) != version for name, version in PINS.items()):
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        argv += ["--upgrade", "--target", str(TOOLS_DIR)]
        argv += [f"{name}=={version}" for name, version in PINS.items()]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PeerUnavailable(
                f"pip install --target {TOOLS_DIR} failed:\n{done.stderr[-2000:]}"
            )
    if str(TOOLS_DIR) not in sys.path:
        sys.path.append(str(TOOLS_DIR))  # last: never shadows what Corral itself imports
    return {name: _installed().get(name, "?") for name in PINS}
