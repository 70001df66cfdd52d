"""Alert thresholds in the dashboard at 80x24 (``corral dash --max-waiting ...``): a breach is
measured as ``corral check`` does, shows in the status bar, is announced once, and rings the
bell (``--bell``) when it appears, not when its count changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pilot import SIZE, notices, until
from support.workers import running_worker, wait_until

from corral.cli import build_parser
from corral.threshold_flags import thresholds_from
from dashboard import app as app_module
from dashboard.app import DashboardApp
from dashboard.corral_backend import CorralBackend
from dashboard.widgets.status_bar import StatusBar
from engine import Job, Queue
from engine.health import Thresholds

pytestmark = pytest.mark.timeout(90)


class BellApp(DashboardApp):
    """Counts the bells it rings (a headless terminal has none)."""

    CSS_PATH = str(Path(app_module.__file__).parent / "app.tcss")  # not beside this test
    rings = 0

    def bell(self) -> None:
        self.rings += 1


def _status(app: DashboardApp) -> str:
    return app.screen.query_one(StatusBar).render_line_text().plain


async def _noop(job: Job) -> Any:
    return None


def test_dash_takes_the_check_flags() -> None:
    args = build_parser().parse_args(
        ["dash", "--max-waiting", "5", "--max-wait-age", "2.5", "--min-workers", "1", "--bell"]
    )
    assert args.bell
    assert thresholds_from(args) == Thresholds(max_waiting=5, max_wait_age_ms=2500, min_workers=1)


async def test_breaches_show_and_ring_once_each(redis_url: str, queue_name: str) -> None:
    async with Queue(queue_name, redis_url) as queue:
        await queue.add_bulk([("job", {}) for _ in range(3)])
        app = BellApp(
            redis_url,
            CorralBackend(),
            queues=[queue_name],
            poll_interval=0.2,
            thresholds=Thresholds(max_waiting=2),
            bell=True,
        )
        app.monitor.health_interval = 0.3
        async with app.run_test(size=SIZE) as pilot:
            breach = f"{queue_name}: 3 jobs waiting (limit 2)"
            await until(pilot, lambda: breach in _status(app))
            assert breach in notices(app) and app.rings == 1
            assert (await queue.get_counts("wait"))["wait"] == 3

            # the same breach with a new count: shown, not announced or rung again
            await queue.add("job", {})
            await until(pilot, lambda: f"{queue_name}: 4 jobs waiting" in _status(app))
            assert app.rings == 1 and "4 jobs waiting" not in notices(app)

            # a worker drains the queue: the breach goes
            async with running_worker(queue_name, _noop, redis_url):

                async def drained() -> bool:
                    return (await queue.get_counts("wait"))["wait"] == 0

                await wait_until(drained, within=20)
            await until(pilot, lambda: "waiting (limit 2)" not in _status(app))

            # it comes back: a new breach, rung again
            await queue.add_bulk([("job", {}) for _ in range(3)])
            await until(pilot, lambda: app.rings == 2)
            assert breach in _status(app)
