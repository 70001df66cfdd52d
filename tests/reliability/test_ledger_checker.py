"""The execution ledger's checker itself: each of Jepsen's total-queue sets is found, and a
re-run after an allowed recovery is not counted as a duplicate."""

from __future__ import annotations

import json
from pathlib import Path

from support.ledger import check_ledger


def _write(path: Path, *lines: tuple[str, str, int]) -> Path:
    with path.open("a") as out:
        for kind, job_id, attempt in lines:
            out.write(json.dumps({"kind": kind, "job_id": job_id, "attempt": attempt}) + "\n")
        out.write('{"kind": "start", "job_id": "torn')  # a killed writer's half line
    return path


def test_clean_run(tmp_path: Path) -> None:
    ledger = _write(tmp_path / "l", ("start", "1", 1), ("finish", "1", 1), ("start", "2", 1))
    check = check_ledger(ledger, {"1", "2"}, {"1", "2"})
    assert not check.lost and not check.duplicated and not check.unexpected
    assert check.starts == {"1": 1, "2": 1} and check.finishes == {"1": 1}


def test_lost_duplicated_and_unexpected_are_found(tmp_path: Path) -> None:
    ledger = _write(
        tmp_path / "l",
        ("start", "1", 1), ("finish", "1", 1), ("start", "1", 2), ("finish", "1", 2),
        ("start", "9", 1), ("finish", "9", 1),
    )  # fmt: skip
    check = check_ledger(ledger, {"1", "2"}, {"1"})
    assert check.lost == {"2"}
    assert check.duplicated == {"1"}  # finished twice with no recovery allowed
    assert check.unexpected == {"9"}


def test_a_rerun_after_an_allowed_recovery_is_not_a_duplicate(tmp_path: Path) -> None:
    ledger = _write(
        tmp_path / "l",
        ("start", "1", 1), ("finish", "1", 1), ("start", "1", 2), ("finish", "1", 2),
        ("start", "2", 1), ("finish", "2", 1), ("start", "2", 2), ("finish", "2", 2),
        ("start", "2", 3), ("finish", "2", 3),
    )  # fmt: skip
    check = check_ledger(ledger, {"1", "2"}, {"1", "2"}, recovered=["1", "2"])
    assert check.recovered == {"1"}
    assert check.duplicated == {"2"}  # three finishes, one recovery allowed
    assert (
        check_ledger(ledger, {"1", "2"}, {"1", "2"}, recovered=["1", "2", "2"]).duplicated == set()
    )


def test_two_finishes_of_one_attempt_are_always_duplicated(tmp_path: Path) -> None:
    ledger = _write(tmp_path / "l", ("start", "1", 1), ("finish", "1", 1), ("finish", "1", 1))
    check = check_ledger(ledger, {"1"}, {"1"}, recovered=["1"])
    assert check.duplicated == {"1"} and check.recovered == set()
