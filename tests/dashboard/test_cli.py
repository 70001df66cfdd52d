"""``corral dash`` options and argument errors (no UI started)."""

from __future__ import annotations

import argparse

import pytest

from corral.cli import build_parser, main
from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.cli import run_dash


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["dash", *argv])


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    args = parse()
    assert (args.queues, args.prefix, args.read_only, args.bullmq) == (None, None, False, False)
    args = parse("--queue", "a", "--queue", "b", "--read-only", "--prefix", "p", "--bullmq")
    assert (args.queues, args.prefix, args.read_only, args.bullmq) == (["a", "b"], "p", True, True)


@pytest.mark.parametrize(
    "argv",
    [
        ("--queue", "bad name"),
        ("--prefix", "a:b"),
        ("--prefix", "{bull}"),  # a BullMQ prefix, not a Corral one
        ("--bullmq", "--queue", "a:b"),  # BullMQ queue names have no ':'
        ("--bullmq", "--prefix", ""),
    ],
)
def test_bad_names_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dash", "--redis", "redis://127.0.0.1:1/0", *argv]) == 2
    assert "invalid" in capsys.readouterr().err


def test_bullmq_dashboard_acts_unless_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    url = "redis://user:hunter2@127.0.0.1:1/0"
    assert main(["dash", "--bullmq", "--redis", url, "--queue", "{emails}"]) == 0
    app = started[0]
    assert isinstance(app.backend, BullMQBackend)
    assert (app.backend.prefix, app.read_only, app.monitor.fixed_queues) == (
        "bull",
        False,
        ("{emails}",),
    )
    assert "BullMQ bull" in app.title and "hunter2" not in app.title
    assert main(["dash", "--bullmq", "--redis", url, "--prefix", "{app}", "--read-only"]) == 0
    assert (started[1].backend.prefix, started[1].read_only) == ("{app}", True)


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


def test_thresholds_reach_the_monitor_and_bullmq_refuses_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    url = "redis://127.0.0.1:1/0"
    assert main(["dash", "--redis", url, "--max-waiting", "100", "--window", "5", "--bell"]) == 0
    (app,) = started
    limits = app.monitor.thresholds
    assert limits is not None and (limits.max_waiting, limits.window_ms) == (100, 300_000)
    assert app.announcer.bell
    assert main(["dash", "--redis", url]) == 0
    assert started[1].monitor.thresholds is None  # none given: nothing measured
    assert main(["dash", "--bullmq", "--redis", url, "--min-workers", "1"]) == 2
    assert "Corral queues only" in capsys.readouterr().err
