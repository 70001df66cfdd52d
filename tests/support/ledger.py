"""Reading the execution ledger and checking it (Jepsen's total-queue sets)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LedgerCheck:
    """Jepsen's total-queue sets, from the ledger and what Redis recorded.

    - ``lost``: added (the add returned an id) but not in a terminal state;
    - ``duplicated``: finished more often than once plus the recoveries the test allows for it
      (a stalled job that is re-run may finish twice: once in the worker that lost its lock,
      once in the one that recovered it), or finished twice within one attempt (never
      allowed: an attempt is one fetch);
    - ``unexpected``: started or finished, but never added;
    - ``recovered``: re-run after a recovery the test allowed, and finished more than once.
    """

    starts: Counter[str]
    finishes: Counter[str]
    lost: set[str]
    duplicated: set[str]
    unexpected: set[str]
    recovered: set[str]


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


def check_ledger(
    path: Path, added: set[str], completed: set[str], recovered: Iterable[str] = ()
) -> LedgerCheck:
    """Compare the ledger with the ids that were added and the ids recorded in a terminal state
    (``completed``; include failed-for-good ids where the test expects them). ``recovered``
    lists one job id per recovery the test allows (e.g. the ids of the ``stalled`` events):
    each lets that job finish one more time."""
    lines = read_ledger(path)
    starts = Counter(str(x["job_id"]) for x in lines if x["kind"] == "start")
    finishes = Counter(str(x["job_id"]) for x in lines if x["kind"] == "finish")
    per_attempt = Counter(
        (str(x["job_id"]), x.get("attempt")) for x in lines if x["kind"] == "finish"
    )
    allowed = Counter(recovered)
    extra = {j for j, n in finishes.items() if n > 1}
    twice_in_one_attempt = {j for (j, _), n in per_attempt.items() if n > 1}
    duplicated = {j for j in extra if finishes[j] > 1 + allowed[j]} | twice_in_one_attempt
    return LedgerCheck(
        starts=starts,
        finishes=finishes,
        lost=added - completed,
        duplicated=duplicated,
        unexpected=(set(starts) | set(finishes)) - added,
        recovered={j for j in extra if allowed[j]} - duplicated,
    )
