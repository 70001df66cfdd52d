"""The pinned ``bullmq`` package: it has every call the actions use, its action scripts are Node
BullMQ 6.7's byte for byte, and the rules of which action agrees with which queue layout."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dashboard.bullmq.acting import PINNED_VERSION, REQUIRED_API, load_package
from dashboard.bullmq.agreement import Change, refusal
from dashboard.bullmq.layout import QueueLayout, detect_layout

ACTION_SCRIPTS = (
    "reprocessJob-9",
    "moveJobsToWait-8",
    "promote-9",
    "removeJob-2",
    "changePriority-7",
    "pause-7",
    "cleanJobsInSet-3",
)
"""The scripts behind retry, retry/promote all, promote, discard, priority, pause, clean."""


def test_the_pinned_package_has_every_call_the_actions_use() -> None:
    package = load_package("test")
    assert package.__version__ == PINNED_VERSION
    for name, calls in REQUIRED_API.items():
        for call in calls:
            assert callable(getattr(getattr(package, name), call)), f"{name}.{call}"


def test_its_action_scripts_are_those_of_node_bullmq_6(bullmq6_modules: Path) -> None:
    package = load_package("test")
    commands = Path(package.__file__).parent / "commands"
    names = json.dumps(list(ACTION_SCRIPTS))
    program = (
        f"const out = {{}}; for (const n of {names}) "
        "{ const m = require(`bullmq/dist/cjs/scripts/${n}.js`); out[n] = Object.values(m)[0]; }"
        "process.stdout.write(JSON.stringify(out));"
    )
    done = subprocess.run(
        ["node", "-e", program],
        env={**os.environ, "NODE_PATH": str(bullmq6_modules)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    node = json.loads(done.stdout)
    for name in ACTION_SCRIPTS:
        ours = (commands / f"{name}.lua").read_text()
        assert node[name]["content"].strip() == ours.strip(), name
        assert node[name]["keys"] == int(name.rsplit("-", 1)[1])


V6_RUNNING = detect_layout("bullmq:6.7.0", False, 3, 0)
V6_PAUSED = detect_layout("bullmq:6.7.0", True, 3, 0)
V5_RUNNING = detect_layout("bullmq:5.81.5", False, 3, 0)
V5_PAUSED = detect_layout("bullmq:5.81.5", True, 0, 3)
UNKNOWN_RUNNING = detect_layout(None, False, 3, 0)
UNKNOWN_PAUSED = detect_layout(None, True, 0, 0)
MIXED = detect_layout("bullmq:5.81.5", True, 2, 3)


@pytest.mark.parametrize(
    ("layout", "change", "allowed"),
    [
        (V6_RUNNING, Change.PAUSE, True),
        (V6_PAUSED, Change.RESUME, True),
        (V6_PAUSED, Change.READY, True),  # BullMQ 6 keeps a paused queue's jobs in wait
        (V5_RUNNING, Change.PAUSE, False),
        (V5_RUNNING, Change.READY, True),
        (V5_PAUSED, Change.RESUME, True),  # the v6 script renames paused to wait, as v5 does
        (V5_PAUSED, Change.READY, False),
        (V5_PAUSED, Change.REMOVE, True),
        (UNKNOWN_RUNNING, Change.PAUSE, False),
        (UNKNOWN_RUNNING, Change.READY, True),
        (UNKNOWN_PAUSED, Change.READY, False),
        (UNKNOWN_PAUSED, Change.RESUME, True),
        (MIXED, Change.RESUME, False),
        (MIXED, Change.PAUSE, False),
        (MIXED, Change.READY, False),
        (MIXED, Change.REMOVE, True),
    ],
)
def test_actions_run_only_where_bullmq_5_and_6_agree(
    layout: QueueLayout, change: Change, allowed: bool
) -> None:
    reason = refusal("act", change, "q", layout)
    assert (reason is None) is allowed, reason
    assert reason is None or "refused: queue 'q'" in reason


def test_refusals_say_why() -> None:
    pause = refusal("pause", Change.PAUSE, "mail", V5_RUNNING) or ""
    assert "BullMQ 5 queue (version hint bullmq:5.81.5)" in pause
    assert "jobs in wait would be lost" in pause
    unknown = refusal("pause", Change.PAUSE, "mail", UNKNOWN_RUNNING) or ""
    assert "records no BullMQ version" in unknown
    ready = refusal("retry", Change.READY, "mail", V5_PAUSED) or ""
    assert ready.startswith("retry refused: queue 'mail' is paused the BullMQ 5 way")
    mixed = refusal("resume", Change.RESUME, "mail", MIXED) or ""
    assert "BullMQ 5 and 6 clients at once (paused: jobs in both wait and paused)" in mixed
