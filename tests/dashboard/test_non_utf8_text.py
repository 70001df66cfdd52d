"""Text that is not UTF-8, as the dashboard reads it (``surrogateescape``): it encodes back to
the bytes it was read as, and never leaves the process as a lone surrogate: ``display_text``
and the notices show each such byte as ``\\xff``, the audit log writes it so, the job filter
finds it as it is shown, and the event tail reads ids that address their own keys."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from dashboard.audit import ActionScope, AuditLog
from dashboard.corral_backend import CorralBackend
from dashboard.event_tail import EventTail
from dashboard.model import JobRow
from dashboard.sanitize import (
    ESCAPE_STYLE,
    display_json_field,
    display_text,
    escaped,
    from_redis,
    notice_text,
    quoted,
    to_redis,
)
from dashboard.widgets.job_table import matches

SURROGATES = {chr(c) for c in range(0xD800, 0xE000)}


def _no_surrogate(text: str) -> None:
    assert not SURROGATES.intersection(text), repr(text)
    text.encode("utf-8")  # strict


def test_bytes_that_are_not_utf8_round_trip() -> None:
    for raw in (b"job-\xff\xfe", b"\x80", b"ok", "漢字".encode(), b"\xe6\xbc", b"a\xed\xa0\x80b"):
        text = from_redis(raw)
        assert to_redis(text) == raw
    assert from_redis("already text") == "already text"


def test_display_text_shows_each_byte_escaped_and_styled() -> None:
    text = display_text(from_redis(b"job-\xff\xfe"))
    assert text.plain == "job-\\xff\\xfe"
    assert [(span.start, span.end, span.style) for span in text.spans] == [
        (4, 8, ESCAPE_STYLE),
        (8, 12, ESCAPE_STYLE),
    ]
    assert display_text(b"ok\xff").plain == "ok\\xff"  # bytes given as they are
    assert display_text(from_redis(b"a\xffb\nc"), single_line=False).plain == "a\\xffb\nc"


def test_other_lone_surrogates_are_shown_too() -> None:
    parsed = json.loads('"x\\ud800y\\udcffz"')  # JSON may carry lone surrogates as escapes
    assert display_text(parsed).plain == "x\\ud800y\\xffz"
    field = display_json_field(json.dumps({"k": parsed}))
    assert '"k": "x\\ud800y\\xffz"' in field.plain
    _no_surrogate(field.plain)


def test_a_cut_keeps_no_half_escape() -> None:
    text = display_text(from_redis(b"\xff" * 50), limit=10)
    _no_surrogate(text.plain)
    assert text.plain.startswith("\\xff" * 10)
    assert "40 more chars" in text.plain
    _no_surrogate(display_text(b"\xe6\xbc" * 10_000, limit=5).plain)


def test_notices_escaped_and_quoted_are_strict_utf8() -> None:
    job_id = from_redis(b"j\xff1")
    assert notice_text(f"retried job {job_id}") == "retried job j\\xff1"
    assert escaped(job_id) == "j\\xff1"
    assert escaped("plain ascii") == "plain ascii"
    assert escaped("漢字") == "漢字"
    assert quoted(job_id) == "'j\\xff1'"
    assert quoted("a\\udcff") == repr("a\\udcff")  # a backslash in the text stays escaped
    assert quoted(from_redis(b"\\\xff")) == "'\\\\\\xff'"
    for text in (notice_text(job_id), escaped(job_id), quoted(job_id)):
        _no_surrogate(text)


def test_the_audit_log_writes_such_bytes_as_text(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    queue = from_redis(b"mail\xfe")
    job_id = from_redis(b"j\xff1")
    scope = ActionScope("retry", queue, f"job {quoted(job_id)} (failed)")
    assert AuditLog(path).record(scope, f"retried job {job_id}: back in wait") is None
    (line,) = path.read_bytes().decode("utf-8").splitlines()  # strict
    entry = json.loads(line)
    assert entry["queue"] == "mail\\xfe"
    assert entry["scope"] == "job 'j\\xff1' (failed)"
    assert entry["outcome"] == "retried job j\\xff1: back in wait"
    for value in entry.values():
        if isinstance(value, str):
            _no_surrogate(value)


def test_the_job_filter_finds_a_byte_as_it_is_shown() -> None:
    row = JobRow(id=from_redis(b"j\xff1"), state="failed", name=from_redis(b"n\xfem"))
    assert matches(row, "\\xff") and matches(row, "\\XFE") and matches(row, "j\\xff1")
    assert not matches(row, "\\xfd")


async def test_the_event_tail_reads_ids_that_address_their_own_keys(
    redis_url: str, queue_name: str
) -> None:
    backend = CorralBackend()
    stream = backend.events_key(queue_name)
    raw = aioredis.Redis.from_url(redis_url)
    client = aioredis.Redis.from_url(
        redis_url, decode_responses=True, encoding_errors="surrogateescape"
    )
    try:
        tail = EventTail(backend, block_ms=10)
        await tail.read(client, [queue_name])  # the first round starts at the stream's end
        await raw.xadd(stream, {"event": "stalled", "job_id": b"j\xff1", "note": b"\xfeok"})
        found = await tail.read(client, [queue_name])
        (event,) = found.events
        assert to_redis(event.job_id) == b"j\xff1"
        assert event.get("note") == from_redis(b"\xfeok")
        assert display_text(event.job_id).plain == "j\\xff1"
    finally:
        await raw.aclose()
        await client.aclose()
