"""The whole hostile corpus of RELIABILITY.md 3.5 where the other Z6 tests do not put it, at
80x24 through Pilot: every field of the job detail (name, data keys and values at depth,
progress, return value, failed reason, stack trace, logs, options), the stalled screen (ids and
names of active jobs whose lock is gone, the stalled events the engine's check emits) and the
overview's alerts (the status bar's alert and the breaker notices).

Values go in through the real engine wherever it takes them (``Queue.add``, a real ``Worker``
whose processor logs the value, reports it as progress, and raises it or returns it, the
engine's stalled check); what the engine refuses (control characters in a name or an id,
invalid UTF-8) is written by a plain client afterwards, as another producer could. Each view
is checked on what the terminal shows: no markup interpreted (the brackets are on screen), no
control, bidi or zero-width character reaching the terminal (each is shown as a visible escape),
no crash, and a key still works afterwards."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from hostile import (
    CORPUS,
    MARKUP,
    TEN_MB_LINE,
    as_stored,
    assert_inert,
    detail_sections,
    open_job_screen,
    shown,
    squeezed,
    stand_in,
    toasts_text,
    whole_detail,
)
from pilot import SIZE, make_app, notices, until, visible_text
from support.workers import running_worker, wait_until
from textual.pilot import Pilot
from workload import take_jobs

from dashboard.app import DashboardApp
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.job_detail import JobDetailView
from dashboard.widgets.status_bar import StatusBar
from engine import Job, Queue, commands
from engine.errors import InvalidJobOptions
from engine.keys import QueueKeys
from engine.options import validate_job_id

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client that writes bytes as they are (invalid UTF-8, control characters)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _engine_takes_name(value: str | bytes) -> bool:
    """Whether ``Queue.add`` takes ``value`` as a job name (it refuses control characters)."""
    return isinstance(value, str) and value.isprintable()


def _engine_takes_id(value: str | bytes) -> bool:
    if not isinstance(value, str):
        return False
    try:
        validate_job_id(value)
    except InvalidJobOptions:
        return False
    return True


def _raw_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


async def _back(pilot: Pilot[None], app: DashboardApp, screen: type[Any]) -> None:
    """``escape`` still works: the app is responsive and goes back."""
    await pilot.press("escape")
    await until(pilot, lambda: isinstance(app.screen, screen))


# -- the job detail ----------------------------------------------------------------------------


async def _process(job: Job) -> Any:
    """A real processor: logs the value, reports it as progress, then raises or returns it."""
    value = job.data["value"]
    await job.log(value)
    await job.update_progress(value)
    if job.data["fail"]:
        raise RuntimeError(value)
    return value


async def _hostile_jobs(queue: Queue, url: str, raw: aioredis.Redis) -> list[tuple[str, str, bool]]:
    """For each corpus value a job that failed with it and one that returned it, processed by a
    real worker; ``(job id, value as stored, failed)`` each. The value is also the job's name,
    a key and a value of its data (one level down and in a list two levels down) and an option
    (``job_id`` of the returning one, the ``deduplication`` id of the failing one). Bytes that
    are not UTF-8 go in as their printable stand-in (``\\xff``), and as themselves in the logs:
    in a field of the job hash they make it a corrupt job (``test_non_utf8_jobs``)."""
    keys = QueueKeys(queue.name)
    added: list[tuple[str | bytes, Job, bool]] = []
    for value in CORPUS:
        text = stand_in(value)
        data = {"value": text, "nested": {text: text, "list": [1, {"deep": text}]}}
        name = text if text.isprintable() else "placeholder"
        dedup = {"id": text} if text.isprintable() else None
        failing = await queue.add(name, {**data, "fail": True}, deduplication=dedup)
        job_id = text if _engine_takes_id(value) else None
        returning = await queue.add(name, {**data, "fail": False}, job_id=job_id)
        added += [(value, failing, True), (value, returning, False)]
    async with running_worker(queue.name, _process, url, concurrency=4):

        async def all_done() -> bool:
            counts = await queue.get_counts("completed", "failed")
            return counts["completed"] + counts["failed"] == len(added)

        await wait_until(all_done, within=30)
    for value, job, failed in added:
        job_key = keys.job(job.id)
        text = stand_in(value)
        if not text.isprintable():  # another producer wrote the name
            await raw.hset(job_key, "name", _raw_bytes(value))
        opts = json.loads(await raw.hget(job_key, "opts") or b"{}")
        if failed and "deduplication" not in opts:  # ... and the option the engine refuses
            opts["deduplication"] = {"id": text}
            await raw.hset(job_key, "opts", json.dumps(opts))
        if not failed and "job_id" not in opts:
            opts["job_id"] = text
            await raw.hset(job_key, "opts", json.dumps(opts))
        if isinstance(value, bytes):  # invalid UTF-8 in the logs, shown as its stand-in is
            await raw.rpush(keys.logs(job.id), value)
    return [(job.id, stand_in(value), failed) for value, job, failed in added]


def _expected(value: str, failed: bool) -> dict[str, list[str]]:
    """What each section of the detail of a job made by ``_hostile_jobs`` must show, as
    visible text (a JSON field's strings as JSON writes them: ESC as ``\\u001b``)."""
    in_json = shown(value, in_json=True)
    expected = {
        "header": [shown(value)],  # the name
        "data": [f'"value": "{in_json}"', f'"{in_json}": "{in_json}"', f'"deep": "{in_json}"'],
        "progress": [shown(value)],
        "logs": [shown(value)],
    }
    if failed:
        expected["failed reason"] = [shown(f"RuntimeError: {value}")]
        expected["stacktrace"] = ["Traceback", shown(f"RuntimeError: {value}")]
        expected["options"] = [f'"deduplication": {{"id": "{in_json}"}}']
    else:
        expected["return value"] = [shown(value)]
        expected["options"] = [f'"job_id": "{in_json}"']
    return expected


async def test_hostile_corpus_in_every_field_of_the_job_detail(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    async with Queue(queue_name, redis_url) as queue:
        jobs = await _hostile_jobs(queue, redis_url, raw)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        for job_id, value, failed in jobs:
            screen = await open_job_screen(pilot, app, queue_name, job_id)
            assert screen.detail is not None and not screen.detail.malformed
            sections = detail_sections(await whole_detail(pilot, app))
            expected = _expected(value, failed)
            assert set(sections) == set(expected), (value, sections)
            for title, wanted in expected.items():
                for text in wanted:
                    assert squeezed(text) in sections[title], (title, text, sections[title])
                if value in MARKUP:  # taken literally, brackets and all
                    assert squeezed(value) in sections[title], (title, value)
            await _back(pilot, app, OverviewScreen)
        assert app.is_running


async def test_a_ten_megabyte_line_in_every_field_of_the_job_detail(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    """A 10 MB single line as the name, data, progress, return value, failed reason, stack
    trace and an option (written by another producer: the engine refuses such payloads): shown
    one window at a time, the screen still answers keys."""
    async with Queue(queue_name, redis_url) as queue:
        job = await queue.add("big", {"n": 1})
    keys = QueueKeys(queue_name)
    tail = "[bold]x\x1b[2J\u202e"
    line = TEN_MB_LINE + tail
    await raw.hset(
        keys.job(job.id),
        mapping={
            "name": line,
            "data": json.dumps({"blob": line}),
            "progress": json.dumps(line),
            "returnvalue": json.dumps(line),
            "failed_reason": line,
            "stacktrace": json.dumps([line]),
            "opts": json.dumps({"attempts": 1, "deduplication": {"id": line}}),
        },
    )
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        screen = await open_job_screen(pilot, app, queue_name, job.id)
        text = squeezed(await whole_detail(pilot, app))
        assert "part1of2,622" in text
        content = str(screen.query_one(JobDetailView).content)
        assert len(content) < 100_000  # one window of each value, not the value
        await pilot.press("M")  # before the first part: said so, nothing breaks
        await until(pilot, lambda: "the first part" in notices(app))
        await pilot.press("m")
        await until(pilot, lambda: screen.part == 1)
        screen._show_part(2_621)  # the last window: the hostile end, inert
        await pilot.pause(0.05)
        text = squeezed(await whole_detail(pilot, app))
        assert "part2,622of2,622" in text
        assert "[bold]x␛[2J<U+202E>" in text
        await _back(pilot, app, OverviewScreen)


# -- the stalled screen ------------------------------------------------------------------------


async def _stall(
    queue: Queue, raw: aioredis.Redis, values: tuple[str | bytes, ...]
) -> list[tuple[str, str]]:
    """One active job per value, named and identified by it, whose lock is gone (its worker
    died); ``(id, name)`` of each as the dashboard reads them back. An id the engine refuses
    (control characters, bytes that are not UTF-8) is written by another producer."""
    keys = QueueKeys(queue.name)
    for value in values:
        name = as_stored(value) if _engine_takes_name(value) else "placeholder"
        job_id = as_stored(value) if _engine_takes_id(value) else None
        await queue.add(name, {"n": 1}, job_id=job_id)
    taken = await take_jobs(queue, len(values), 60_000)
    assert len(taken) == len(values)
    rows = []
    for value, job_id in zip(values, taken, strict=True):
        await raw.delete(keys.lock(job_id))  # the worker died: no lock
        await raw.hset(keys.job(job_id), mapping={"name": value, "worker": value})
        new_id = job_id
        if job_id != as_stored(value):  # an id the engine refuses, written by another producer
            score = await raw.zscore(keys.active, job_id)
            assert score is not None
            await raw.rename(keys.job(job_id), keys.job_prefix.encode() + _raw_bytes(value))
            await raw.zrem(keys.active, job_id)
            await raw.zadd(keys.active, {_raw_bytes(value): score})
            new_id = as_stored(value)
        rows.append((new_id, as_stored(value)))
    return rows


def _cell(value: str, limit: int) -> str:
    """A table cell of ``value`` cut to ``limit`` characters, and how the cut is said."""
    if len(value) <= limit:
        return re.escape(shown(value))
    return re.escape(shown(value[:limit]) + "…") + rf" \({len(value) - limit} more chars\)"


def _active_row_shown(text: str, job_id: str, name: str) -> bool:
    """A row of the active table with this id and name (cut to their columns' widths)."""
    row = re.compile(f"^ {_cell(job_id, 14)} +{_cell(name, 18)} ", re.MULTILINE)
    return row.search(text) is not None


async def test_hostile_ids_and_names_on_the_stalled_screen(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("warm-up", {})
        app = make_app(redis_url, queue_name)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
            await take_jobs(queue, 1, 60_000)  # the warm-up job, held by a live lock
            for start in range(0, len(CORPUS), 5):  # the stalled events list shows 5
                rows = await _stall(queue, raw, CORPUS[start : start + 5])

                def rows_shown(rows: list[tuple[str, str]] = rows) -> bool:
                    text = visible_text(app)
                    return all(_active_row_shown(text, *row) for row in rows)

                await until(pilot, rows_shown)
                counted = f"{len(rows) + 1} active, {len(rows)} without lock"

                def lock_gone(counted: str = counted) -> bool:
                    return counted in visible_text(app)

                await until(pilot, lock_gone)
                assert_inert(app)
                # the engine's stalled check: marks them, then finds them still without lock
                async with asyncio.timeout(10):
                    while (await queue.get_counts("active"))["active"] > 1:
                        await commands.recover_stalled(queue.scripts, keys, 0, 10)
                        await asyncio.sleep(0.02)

                def events_shown(rows: list[tuple[str, str]] = rows) -> bool:
                    text = visible_text(app)
                    return all(f"job {shown(job_id[:30])}" in text for job_id, _ in rows)

                await until(pilot, events_shown)  # one line each, the newest five
                await until(pilot, lambda: "1 active, 0 without lock" in visible_text(app))
                text = assert_inert(app)
                for job_id, _ in rows:
                    if job_id in MARKUP:
                        assert f"job {job_id[:30]}" in text
            await pilot.press("j", "k")
            await _back(pilot, app, OverviewScreen)
            await pilot.press("s")  # and opens again
            await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
            assert_inert(app)


async def test_a_job_id_that_is_not_utf8_is_read_by_its_own_key(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    """An active job whose id is not UTF-8 (only another producer can write one): the
    dashboard reads it back as the same bytes, so its row shows its name and its lock is
    found (not counted "without lock"); the bytes show as ``\\xff\\xfe``."""
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("named", {})
        (job_id,) = await take_jobs(queue, 1, 60_000)
    hostile = keys.job_prefix.encode() + b"\xff\xfe"
    await raw.rename(keys.job(job_id), hostile)
    await raw.rename(keys.lock(job_id), hostile + b":lock")
    await raw.zrem(keys.active, job_id)
    await raw.zadd(keys.active, {b"\xff\xfe": 1})
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.press("s")
        await until(pilot, lambda: isinstance(app.screen, StalledScreen) and app.screen.loaded)
        await until(pilot, lambda: "1 active" in visible_text(app))
        text = assert_inert(app)
        assert _active_row_shown(text, as_stored(b"\xff\xfe"), "named")
        assert "\\xff\\xfe" in text
        assert "1 active, 0 without lock" in text


# -- the overview's alerts ---------------------------------------------------------------------


async def test_hostile_breaker_alerts_and_notices_on_the_overview(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    """A breaker another client opened with a hostile reason, written by a hostile name, and
    the event saying so: the overview's alert (the status bar) and the notice it raises show
    each value inert, the notice as a toast on screen."""
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await queue.add("send", {})
        await take_jobs(queue, 1, 60_000)  # nothing waits: the breaker's alert comes first
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        # events go in once the tail follows the stream (it starts after what is already there)
        await until(pilot, lambda: queue_name in app.monitor.tail.last_ids)
        for value in CORPUS:
            app.clear_notifications()
            hostile = _raw_bytes(value)
            await raw.hset(keys.meta, mapping={"tripped": "open", "breaker_reason": hostile})
            await raw.xadd(
                keys.events,
                {"event": "breaker", "state": "open", "reason": hostile, "by": hostile},
            )
            expected = as_stored(value)
            notice = shown(f"{queue_name}: circuit breaker open ({expected}) by {expected}")

            def announced(notice: str = notice) -> bool:
                return squeezed(notice) in toasts_text(app)

            await until(pilot, announced)

            def alerted(expected: str = expected) -> bool:
                row = app.snapshot.queue(queue_name) if app.snapshot else None
                return row is not None and row.breaker_reason == expected

            await until(pilot, alerted)
            await pilot.pause(0.1)
            text = assert_inert(app)
            assert "⚠" in text.splitlines()[0]  # the alert, cut by 80 columns
            bar = app.screen.query_one(StatusBar).render_line_text().plain
            assert f"circuit breaker open ({shown(expected[:15])}" in bar
            if value in MARKUP:
                assert squeezed(value) in toasts_text(app)
        await pilot.press("w")  # keys still work
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen))
        assert_inert(app)
