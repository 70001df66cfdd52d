"""``corral dash`` options and argument errors (no UI started)."""

from __future__ import annotations

import argparse

import pytest

from corral.cli import build_parser
from dashboard.cli import run_dash


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dash", *argv])


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    args = parse()
    assert (args.queues, args.prefix, args.read_only) == (None, "corral", False)
    args = parse("--queue", "a", "--queue", "b", "--read-only", "--prefix", "p")
    assert (args.queues, args.prefix, args.read_only) == (["a", "b"], "p", True)


@pytest.mark.parametrize("argv", [("--queue", "bad name"), ("--prefix", "a:b")])
def test_bad_names_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert "invalid" in capsys.readouterr().err


def test_bad_queue_name_given_directly_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(redis=None, queues=["bad name"], prefix="corral", read_only=False)
    assert run_dash(args) == 2
    assert "invalid" in capsys.readouterr().err


def test_help_never_prints_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://user:hunter2@127.0.0.1:6379/0")
    with pytest.raises(SystemExit):
        parse("--help")
    assert "hunter2" not in capsys.readouterr().out
