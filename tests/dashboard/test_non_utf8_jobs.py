"""Jobs whose id and name are not UTF-8 (RELIABILITY.md Z6), written by a plain client as
another producer could (the engine refuses such ids), at 80x24 through Pilot.

The dashboard reads them back as the same bytes, so each is listed, opened and acted on under
its own key: the job's state in Redis afterwards says which job an action reached. Every view
shows such a byte as ``\\xff``; no lone surrogate reaches the screen, a notice, or the audit
log (one valid UTF-8 JSON line per action).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hostile import as_stored, assert_inert, detail_sections, open_job_screen, whole_detail
from pilot import SIZE, make_app, notices, until, visible_text
from textual.pilot import Pilot
from textual.widgets import Button
from workload import finish_jobs

from dashboard.app import DashboardApp
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.queue import QueueScreen
from dashboard.widgets.job_table import JobTable
from engine.keys import QueueKeys
from engine.queue import Queue

pytestmark = pytest.mark.timeout(120)


PLAIN_NAME_ID = b"j\xff1"
"""A failed job whose id is not UTF-8; its fields are."""
FOREIGN_ID = b"j\xfe2"
"""A failed job whose id and name are not UTF-8 (a corrupt job to the engine's workers)."""
FOREIGN_NAME = b"n\xffm"


@pytest.fixture
async def raw(redis_url: str, queue_name: str) -> AsyncIterator[aioredis.Redis]:
    """A client that writes and reads bytes as they are. The queue's keys are deleted
    afterwards, so no later test that reads keys with a strict client (the session server is
    shared) meets a name that is not UTF-8."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{QueueKeys(queue_name).base}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def _job_key(keys: QueueKeys, job_id: bytes) -> bytes:
    return keys.job_prefix.encode() + job_id


async def _move(raw: aioredis.Redis, keys: QueueKeys, old: str, new: bytes) -> None:
    """Give failed job ``old`` the id ``new`` (its hash, logs and place in ``failed``), as a
    producer that writes bytes would have named it."""
    score = await raw.zscore(keys.failed, old)
    assert score is not None
    await raw.rename(keys.job(old), _job_key(keys, new))
    await raw.zrem(keys.failed, old)
    await raw.zadd(keys.failed, {new: score})


async def _foreign_failed_jobs(queue: Queue, raw: aioredis.Redis) -> None:
    """Two failed jobs of ``queue`` under ids that are not UTF-8, the second also named so."""
    keys = QueueKeys(queue.name)
    await queue.add("send", {"to": "ann"}, job_id="model-1")
    await queue.add("send", {"to": "bob"}, job_id="model-2")
    assert sorted(await finish_jobs(queue, complete=0, fail=2)) == ["model-1", "model-2"]
    await _move(raw, keys, "model-1", PLAIN_NAME_ID)
    await raw.rpush(_job_key(keys, PLAIN_NAME_ID) + b":logs", b"sent to \xffann")
    await _move(raw, keys, "model-2", FOREIGN_ID)
    await raw.hset(_job_key(keys, FOREIGN_ID), "name", FOREIGN_NAME)


async def _failed_tab(pilot: Pilot[None], app: DashboardApp, rows: int) -> QueueScreen:
    await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
    await pilot.press("enter", "5")  # the queue, its failed tab
    await until(pilot, lambda: isinstance(app.screen, QueueScreen))
    screen = app.screen
    assert isinstance(screen, QueueScreen)
    await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == rows)
    return screen


async def _select(pilot: Pilot[None], screen: QueueScreen, job_id: str) -> None:
    """Move the table's cursor to ``job_id``."""
    for _ in range(10):
        if screen.selected_job() == job_id:
            return
        await pilot.press("j")
        await pilot.pause(0.02)
    raise AssertionError(f"no row for {job_id!r}")


async def _confirm(pilot: Pilot[None], app: DashboardApp) -> str:
    """Wait for the modal, check it, confirm it (past its debounce); what it showed."""
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.pause(0.4)
    text = assert_inert(app)
    app.screen.query_one("#confirm", Button).press()
    await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
    return text


def _svg(path: str) -> str:
    """A screenshot's text, read as strict UTF-8."""
    return Path(path).read_bytes().decode("utf-8")


def _entries(path: Path) -> list[dict[str, Any]]:
    """The audit log's entries; each line must be valid UTF-8 JSON without lone surrogates."""
    lines = path.read_bytes().decode("utf-8").splitlines()  # strict: raises on a bad byte
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        for value in entry.values():
            if isinstance(value, str):
                value.encode("utf-8")  # strict: a lone surrogate would raise here
    return entries


async def test_a_job_whose_id_is_not_utf8_is_listed_opened_and_retried(
    redis_url: str, queue_name: str, raw: aioredis.Redis, audit_path: Path
) -> None:
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await _foreign_failed_jobs(queue, raw)
    job_id = as_stored(PLAIN_NAME_ID)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await _failed_tab(pilot, app, rows=2)
        text = assert_inert(app)
        assert "j\\xff1" in text and "j\\xfe2" in text  # listed, each byte shown escaped
        # the name that is not UTF-8 too, flagged as a worker would judge the job: corrupt
        assert "⚠ malformed n\\xffm" in text
        rows = {row.id: row.malformed for row in screen.page.rows} if screen.page else {}
        assert rows == {job_id: False, as_stored(FOREIGN_ID): True}
        await _select(pilot, screen, job_id)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, lambda: job_screen.detail is not None)
        detail = job_screen.detail
        assert detail is not None and detail.id == job_id and not detail.malformed
        assert detail.data == {"to": "ann"}  # read from its own key
        sections = detail_sections(await whole_detail(pilot, app))
        assert "jobj\\xff1send[failed]" in sections["header"]
        assert '"to":"ann"' in sections["data"]
        assert "sentto\\xffann" in sections["logs"]

        await pilot.press("r")  # retry, from the job's screen
        modal = await _confirm(pilot, app)
        assert f"Retry failed job j\\xff1 of queue {queue_name}?" in modal
        await until(pilot, lambda: "retried job" in notices(app))
        assert_inert(app)
        assert "not written" not in notices(app)  # the audit entry was written
        # the screen reads the job again, by its own key: now in wait
        await until(
            pilot, lambda: job_screen.detail is not None and job_screen.detail.state == "wait"
        )
        await pilot.press("home")
        await until(pilot, lambda: "[wait]" in visible_text(app))
        assert_inert(app)
    # the job itself was retried: its id left failed for wait, its hash is where it was
    assert await raw.zscore(keys.failed, PLAIN_NAME_ID) is None
    assert await raw.lrange(keys.wait, 0, -1) == [PLAIN_NAME_ID]
    assert await raw.hget(_job_key(keys, PLAIN_NAME_ID), "name") == b"send"
    assert await raw.zscore(keys.failed, FOREIGN_ID) is not None  # the other one untouched
    assert not await raw.exists(keys.job("j\\xff1"))  # nothing under the escaped text
    (entry,) = _entries(audit_path)
    assert entry["action"] == "retry" and entry["queue"] == queue_name
    assert entry["scope"] == "job 'j\\xff1' (failed)"
    assert "j\\xff1" in entry["outcome"] or "j\\udcff1" in entry["outcome"]


async def test_a_job_whose_id_and_name_are_not_utf8_is_shown_and_discarded(
    redis_url: str, queue_name: str, raw: aioredis.Redis, audit_path: Path, tmp_path: Path
) -> None:
    """Its name makes it a corrupt job to a worker, so the detail flags it and shows its raw
    fields (data too), each byte escaped, also in a screenshot (written as UTF-8, with a
    title given as bytes that are not UTF-8); discard removes that job and no other."""
    keys = QueueKeys(queue_name)
    async with Queue(queue_name, redis_url) as queue:
        await _foreign_failed_jobs(queue, raw)
    job_id = as_stored(FOREIGN_ID)
    app = make_app(redis_url, queue_name)
    app.title = "Corral " + as_stored(b"redis://h\xff/0")
    assert app.title == "Corral redis://h\\xff/0"
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        job_screen = await open_job_screen(pilot, app, queue_name, job_id)
        svg = _svg(app.save_screenshot("detail.svg", str(tmp_path)))
        assert "redis://h\\xff/0" in svg and "\\xff" in svg and "malformed" in svg
        detail = job_screen.detail
        assert detail is not None and detail.id == job_id and detail.malformed
        assert detail.name == as_stored(FOREIGN_NAME)
        header = detail_sections(await whole_detail(pilot, app))["header"]
        assert "jobj\\xfe2n\\xffm[failed]" in header
        assert "malformedjobhash:field'name'isnotvalidUTF-8" in header
        assert "name:n\\xffm" in header and 'data:{"to":"bob"}' in header
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, JobScreen))

        screen = await _failed_tab(pilot, app, rows=2)
        await _select(pilot, screen, job_id)
        await pilot.press("d")
        modal = await _confirm(pilot, app)
        assert f"Discard job j\\xfe2 of queue {queue_name}?" in modal
        await until(pilot, lambda: "discarded job 'j\\xfe2'" in notices(app))
        await until(pilot, lambda: screen.page is not None and len(screen.page.rows) == 1)
        assert screen.page is not None
        assert [row.id for row in screen.page.rows] == [as_stored(PLAIN_NAME_ID)]
        assert "j\\xff1" in assert_inert(app)  # the row left, shown as the table shows it
    assert not await raw.exists(_job_key(keys, FOREIGN_ID))
    assert await raw.zscore(keys.failed, FOREIGN_ID) is None
    assert await raw.zscore(keys.failed, PLAIN_NAME_ID) is not None  # the other one stays
    (entry,) = _entries(audit_path)
    assert entry["action"] == "discard" and entry["scope"] == "job 'j\\xfe2'"


async def test_the_filter_finds_a_byte_as_it_is_shown(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    """``/`` then ``\\xff``: the rows whose id or name holds that byte, as the table shows it."""
    async with Queue(queue_name, redis_url) as queue:
        await _foreign_failed_jobs(queue, raw)
    job_id = as_stored(FOREIGN_ID)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _failed_tab(pilot, app, rows=2)
        await pilot.press("slash", "backslash", "x", "f", "e", "enter")
        table = screen.query_one(JobTable)
        await until(pilot, lambda: [row.id for row in table.shown_rows] == [job_id])
        assert "1 match" in assert_inert(app)


async def test_go_to_job_takes_such_an_id_typed_as_it_is_shown(
    redis_url: str, queue_name: str, raw: aioredis.Redis
) -> None:
    """``g`` then ``j\\xff1`` (as the table shows the id): the job whose id holds that byte
    opens, read under its own key."""
    async with Queue(queue_name, redis_url) as queue:
        await _foreign_failed_jobs(queue, raw)
    app = make_app(redis_url, queue_name)
    async with app.run_test(size=SIZE) as pilot:
        await _failed_tab(pilot, app, rows=2)
        await pilot.press("g")
        await pilot.pause(0.1)
        await pilot.press(*"j\\xff1", "enter")
        await until(pilot, lambda: isinstance(app.screen, JobScreen))
        screen = app.screen
        assert isinstance(screen, JobScreen)
        await until(pilot, lambda: screen.detail is not None)
        assert screen.detail is not None and screen.detail.id == as_stored(PLAIN_NAME_ID)
        assert screen.detail.data == {"to": "ann"}
        assert "j\\xff1" in assert_inert(app)
