"""Reading the execution ledger and checking it (Jepsen's total-queue sets)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LedgerCheck:
    """Which jobs were lost, finished more than once, or ran without having been added."""

    starts: Counter[str]
    finishes: Counter[str]
    lost: set[str]
    duplicated: set[str]
    unexpected: set[str]


def read_ledger(path: Path) -> list[dict[str, object]]:
    """Every line written so far (a torn last line from a killed process is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def check_ledger(path: Path, added: set[str], completed: set[str]) -> LedgerCheck:
    """Compare the ledger with the ids that were added and the ids recorded as completed."""
    lines = read_ledger(path)
    starts = Counter(str(x["job_id"]) for x in lines if x["kind"] == "start")
    finishes = Counter(str(x["job_id"]) for x in lines if x["kind"] == "finish")
    return LedgerCheck(
        starts=starts,
        finishes=finishes,
        lost=added - completed,
        duplicated={j for j in completed if finishes[j] > 1 and starts[j] <= 1},
        unexpected=set(starts) - added,
    )
