"""The BullMQ rows of the dashboard benchmark: the probe's lines and what the harness makes of
them, the rows and targets, the Node load's processes, and how ``--only`` selects them."""

from __future__ import annotations

import io
import json
import time

import pytest

from bench import dashboard, report
from bench.__main__ import parse_args, settings_from, without
from bench.dash_probe import (
    Probe,
    ProbeLine,
    TailStats,
    entry_age_ms,
    install,
    interpolate,
    parse_lines,
    tail_window,
)
from bench.dashboard import BullProgress, DashSettings, bull_figures, bull_load_argvs
from bench.scenarios import Settings, metrics, selected_scenarios
from dashboard import event_tail
from dashboard.model import Event


def _line(t: float, read: int, gaps: int = 0, full: int = 0, lag: float = 10.0) -> str:
    fields = {"t": t, "rounds": int(t * 20), "read": read, "gaps": gaps, "full": full}
    return json.dumps({**fields, "lag_ms": lag})


def test_parse_lines_skips_a_partly_written_line_and_junk() -> None:
    text = "\n".join([_line(1.0, 100), "not json", _line(1.25, 600), '{"t": 1.5, "rou'])
    lines = parse_lines(text)
    assert [line.t for line in lines] == [1.0, 1.25]
    assert lines[1] == ProbeLine(t=1.25, rounds=25, read=600, gaps=0, full=0, lag_ms=10.0)


def test_tail_window_interpolates_the_reads_at_both_ends() -> None:
    lines = parse_lines(
        "\n".join(
            [
                _line(0.5, 0, gaps=1, lag=900.0),  # a gap before the window: counted in total
                _line(1.0, 1_000, gaps=1),
                _line(1.5, 11_000, gaps=1, full=2, lag=120.0),
                _line(2.0, 21_000, gaps=2, full=3, lag=480.0),
                _line(2.5, 31_000, gaps=2, full=3, lag=999.0),  # after the window
            ]
        )
    )
    stats = tail_window(lines, start=1.1, end=2.2)
    assert stats.read_per_s == pytest.approx(20_000.0)  # 3,000 .. 25,000 read in 1.1 s
    assert stats == TailStats(
        read_per_s=stats.read_per_s, gaps_window=1, gaps_total=2, full_window=3, lag_max_ms=480.0
    )


def test_tail_window_holds_the_first_and_last_lines_beyond_them() -> None:
    lines = parse_lines("\n".join([_line(1.0, 500), _line(2.0, 2_500)]))
    stats = tail_window(lines, start=0.0, end=4.0)
    assert stats.read_per_s == pytest.approx(2_000 / 4.0)
    assert (stats.gaps_window, stats.full_window) == (0, 0)


def test_tail_window_refuses_a_window_the_probe_said_nothing_about() -> None:
    lines = parse_lines("\n".join([_line(1.0, 500), _line(5.0, 2_500)]))
    with pytest.raises(ValueError, match="no line"):
        tail_window(lines, start=2.0, end=3.0)
    with pytest.raises(ValueError, match="no line"):
        tail_window([], start=2.0, end=3.0)


def test_interpolate_is_linear_between_points_and_flat_beyond() -> None:
    points = [(1.0, 10.0), (2.0, 30.0), (2.0, 30.0), (4.0, 50.0)]
    assert interpolate(points, 0.0) == 10.0
    assert interpolate(points, 1.5) == 20.0
    assert interpolate(points, 2.0) == 30.0
    assert interpolate(points, 3.0) == 40.0
    assert interpolate(points, 9.0) == 50.0
    with pytest.raises(ValueError, match="no points"):
        interpolate([], 1.0)


def test_entry_age_is_the_time_since_the_id_s_milliseconds() -> None:
    assert entry_age_ms("1700000000250-3", 1_700_000_000.5) == pytest.approx(250.0)
    assert entry_age_ms("1700000000750-0", 1_700_000_000.5) == 0.0  # never negative
    assert entry_age_ms("garbage", 1.0) == 0.0


def test_probe_writes_running_totals_and_a_line_at_once_after_a_gap() -> None:
    out = io.StringIO()
    probe = Probe(out, batch=2_000, interval=3_600.0)
    probe.observe(2_000, 0, [])  # first round: a line at once
    probe.observe(500, 0, [])  # within the interval: no line
    probe.observe(10, 1, [])  # a gap: a line at once
    lines = parse_lines(out.getvalue())
    totals = [(x.rounds, x.read, x.gaps, x.full) for x in lines]
    assert totals == [(1, 2_000, 0, 1), (3, 2_510, 1, 1)]


def test_the_installed_probe_counts_each_round_the_tail_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = event_tail.TailRound
    monkeypatch.setattr(event_tail, "TailRound", real)  # restored afterwards
    out = io.StringIO()
    install(out)
    now_ms = int(time.time() * 1000)
    events = (
        Event("q", f"{now_ms - 9_000}-0", "added", "1"),
        Event("q", f"{now_ms - 500}-1", "completed", "1"),  # the newest read
        Event("q", f"{now_ms - 700}-0", "active", "1"),
    )
    round_ = event_tail.TailRound(events, ("q",), 2_000)
    assert isinstance(round_, real)
    (line,) = parse_lines(out.getvalue())
    assert (line.rounds, line.read, line.gaps, line.full) == (1, 2_000, 1, 1)
    assert 500.0 <= line.lag_ms < 9_000.0


def test_bull_figures_are_rates_over_the_window() -> None:
    before = BullProgress(added=10_000, unfinished=100, stream_added=40_000)
    after = BullProgress(added=60_000, unfinished=300, stream_added=240_000)
    tail = TailStats(
        read_per_s=19_000.0, gaps_window=0, gaps_total=1, full_window=4, lag_max_ms=250.0
    )
    figures = bull_figures("live", before, after, 10.0, 1.2, 61_000_000, tail, 1)
    assert after.finished == 59_700
    assert figures == {
        "dash-bullmq-cpu-live": pytest.approx(12.0),
        "dash-bullmq-rss-live": 61.0,
        "dash-bullmq-done-live": 4_980.0,
        "dash-bullmq-added-live": 5_000.0,
        "dash-bullmq-stream-live": 20_000.0,
        "dash-bullmq-read-live": 95.0,
        "dash-bullmq-lag-live": 250.0,
        "dash-bullmq-gaps-live": 1.0,
        "dash-bullmq-full-live": 4.0,
        "dash-bullmq-dropped-live": 1.0,
    }


def test_bull_load_starts_the_workers_first_and_splits_the_rate() -> None:
    argvs = bull_load_argvs("redis://127.0.0.1:1/0", DashSettings(rate=6_000, producers=2))
    modes = [argv[2] for argv in argvs]
    assert modes == ["work", "work", "produce", "produce"]
    assert argvs[0][-2:] == ["--concurrency", "50"]
    assert argvs[-1][-2:] == ["--rate", "3000.0"]
    assert all("--queue" in argv and "redis://127.0.0.1:1/0" in argv for argv in argvs)


def test_rows_and_targets_are_in_the_dashboard_table() -> None:
    rows = metrics(Settings())
    keys = [row.key for row in rows]
    for mode in dashboard.MODES:
        assert f"dash-bullmq-cpu-{mode}" in keys and f"dash-bullmq-gaps-{mode}" in keys
    samples = {
        "dash-bullmq-cpu-polling": {"Corral": [14.0, 12.0, 13.0]},
        "dash-bullmq-rss-polling": {"Corral": [60.0]},
        "dash-bullmq-gaps-polling": {"Corral": [0.0, 0.0, 0.0]},
    }
    table = report.dash_table(rows, samples, "Corral")
    assert (
        "| `corral dash --bullmq` CPU, polling, Node BullMQ target 5,000 jobs/s | % of a core"
        " | 13 (12-14) | ≤ 15 |" in table
    )
    assert "| MB | 60 | ≤ 150 |" in table
    assert "| gaps | 0 (0-0) | 0 |" in table
    assert "live" not in table  # only the rows with samples


def test_only_dash_bullmq_selects_both_modes_and_can_be_dropped() -> None:
    args = parse_args(["--quick", "--only", "dash-bullmq"])
    settings = settings_from(args)
    assert selected_scenarios(settings, args.only) == ["dash-bullmq-live", "dash-bullmq-polling"]
    assert without(settings, args.only, "dash-bullmq") == ["none"]
    assert selected_scenarios(settings, ["none"]) == []
    everything = without(settings, ["dash"], "dash-bullmq")
    assert "dash-load-live" in everything
    assert not any(name.startswith("dash-bullmq") for name in everything)
