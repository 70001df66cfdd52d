"""The harness's tables: values with n/a and notes for what a peer does not run, ratios to
Corral, the dashboard's targets, and the generated section of docs/performance.md."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.scenarios import Results, Settings, metrics
from bench.subjects import Limits

LIMITS = {
    "Corral": Limits(),
    "Peer": Limits(
        unsupported={"bulk": "no bulk add"},
        process_share={"process-c1-": 0.1},
        notes=("polls every 10 ms",),
    ),
}
SAMPLES = {
    "add": {"Corral": [100.0, 120.0, 110.0], "Peer": [50.0, 55.0, 60.0]},
    "bulk": {"Corral": [400.0]},
    "dash-cpu-live": {"Corral": [12.0]},
}


def test_limits_name_what_is_not_run_and_share_the_slow_runs() -> None:
    peer = LIMITS["Peer"]
    assert peer.why_not("bulk") == "no bulk add"
    assert peer.why_not("add") is None
    assert peer.jobs_for("process-c1-keep", 20_000) == 2_000
    assert peer.jobs_for("process-c50-keep", 20_000) == 20_000


def test_tables_show_medians_ranges_na_and_ratios() -> None:
    rows = metrics(Settings())
    values = report.table(rows, SAMPLES, LIMITS, "main")
    assert "| add one by one | jobs/s | 110 (100-120) | 55 (50-60) |" in values
    assert "| 400 | n/a |" in values
    ratios = report.ratio_table(rows, SAMPLES, LIMITS)
    assert "| add one by one | 2.00 |" in ratios
    assert "| n/a |" in ratios
    dash = report.dash_table(rows, SAMPLES, "Corral")
    assert "| % of a core | 12 | ≤ 15 |" in dash
    assert not report.has_rows(rows, SAMPLES, "cpu")


def test_notes_say_why_and_what_failed() -> None:
    text = report.notes(LIMITS, {"Peer": ["latency: TimeoutError: slow"]})
    assert "Peer, `bulk*` not run (n/a): no bulk add." in text
    assert "Peer, `process-c1-*`: 10% of the jobs per run" in text
    assert "Peer: polls every 10 ms." in text
    assert "Peer FAILED latency: TimeoutError: slow" in text


def test_write_docs_replaces_only_the_generated_section(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    results = Results(samples=SAMPLES)
    rows = metrics(Settings())
    first = report.section("python -m bench", "2026-01-01", {}, rows, results, LIMITS, 3)
    report.write_docs(doc, first)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Performance")
    doc.write_text(text + "\n## Where the time goes\n\nkept\n", encoding="utf-8")
    second = report.section("python -m bench --runs 5", "2026-01-02", {}, rows, results, LIMITS, 5)
    report.write_docs(doc, second)
    text = doc.read_text(encoding="utf-8")
    assert "Command: `python -m bench --runs 5`" in text
    assert "Command: `python -m bench`" not in text
    assert text.count(report.BEGIN) == 1
    assert text.endswith("kept\n")
    assert "### The dashboard" in text
