"""``DashboardApp``: owns the monitor, the read and action connections, and the screens.

The monitor runs in one exclusive worker and posts ``SnapshotReady``; the app hands each
snapshot to the screen on top (unless frozen). Actions ask first, then run in their own worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.text import Text
from textual import on, work
from textual.app import App
from textual.worker import Worker, WorkerState

from dashboard.actions import JobActions, ReadOnlyError
from dashboard.backend import Backend
from dashboard.durations import age_error, describe_age, parse_age
from dashboard.keymap import APP_KEYS, bindings
from dashboard.messages import SnapshotReady
from dashboard.model import DashboardSnapshot, JobDetail, JobPage
from dashboard.monitor import QueueMonitor
from dashboard.notices import Announcer
from dashboard.palette import KeyCommands
from dashboard.priorities import MAX_PRIORITY, parse_priority, priority_error
from dashboard.replay import confirm_replay_all, confirm_replay_ids, is_dead_letter_queue
from dashboard.sanitize import display_text, mask_url, redact_string
from dashboard.screens.base import DashScreen
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from engine.health import Thresholds

CLEAN_LIMIT = 10_000


def _client(url: str) -> Redis:
    client: Redis = Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=3.0, socket_timeout=10.0
    )
    return client


class DashboardApp(App[None]):
    """The Corral dashboard."""

    CSS_PATH = "app.tcss"
    TITLE = "Corral"
    BINDINGS = bindings(APP_KEYS)
    COMMANDS: ClassVar = App.COMMANDS | {KeyCommands}

    def __init__(
        self,
        url: str,
        backend: Backend,
        *,
        queues: Sequence[str] = (),
        read_only: bool = False,
        poll_interval: float = 1.0,
        thresholds: Thresholds | None = None,
        bell: bool = False,
    ) -> None:
        super().__init__()
        self.url = url
        self.masked_url = mask_url(url)
        self.backend = backend
        self.read_only = read_only
        self.monitor = QueueMonitor(
            backend, url, queues=queues, poll_interval=poll_interval, thresholds=thresholds
        )
        self.announcer = Announcer(bell)
        self.reader = _client(url)
        self.actions = JobActions(backend, None if read_only else _client(url), read_only)
        self.snapshot: DashboardSnapshot | None = None
        self.frozen = False

    def on_mount(self) -> None:
        """Show the overview and start watching."""
        self.push_screen(OverviewScreen())
        self.run_monitor()

    async def on_unmount(self) -> None:
        """Close the connections the app opened."""
        await self.reader.aclose()
        if self.actions._client is not None:
            await self.actions._client.aclose()

    @work(exclusive=True, group="monitor")
    async def run_monitor(self) -> None:
        """Iterate the monitor's snapshots for the app's whole life."""
        async for snapshot in self.monitor.snapshots():
            self.post_message(SnapshotReady(snapshot))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        """Keep the newest snapshot; show it unless frozen."""
        self.snapshot = message.snapshot
        notices, ring = self.announcer.new(message.snapshot)
        for notice in notices:
            self.notify(notice.text, severity=notice.severity, markup=False)
        if ring:
            self.bell()
        if not self.frozen:
            self._show(message.snapshot)

    def _top_dash_screen(self) -> DashScreen | None:
        for screen in reversed(self.screen_stack):
            if isinstance(screen, DashScreen):
                return screen
        return None

    def _show(self, snapshot: DashboardSnapshot) -> None:
        screen = self._top_dash_screen()
        if screen is not None:
            screen.apply_snapshot(snapshot)

    # -- reads for the screens ---------------------------------------------------------------

    async def read_page(self, queue: str, state: str, start: int, count: int) -> JobPage:
        """A bounded page of jobs, on the read connection."""
        return await self.backend.read_page(self.reader, queue, state, start, count)

    async def read_job(self, queue: str, job_id: str) -> JobDetail | None:
        """One job, on the read connection."""
        return await self.backend.read_job(self.reader, queue, job_id)

    def open_job(self, queue: str, job_id: str) -> None:
        """Push the job screen."""
        self.push_screen(JobScreen(queue, job_id))

    # -- app-wide keys -----------------------------------------------------------------------

    def action_help(self) -> None:
        """Keys of the current screen."""
        screen = self._top_dash_screen()
        keys = screen.KEYS if screen is not None and hasattr(screen, "KEYS") else ()
        self.push_screen(HelpScreen(keys, self.read_only))

    def action_toggle_freeze(self) -> None:
        """Stop or restart applying new snapshots."""
        self.frozen = not self.frozen
        if self.snapshot is not None:
            self._show(self.snapshot)

    def action_goto_job(self) -> None:
        """Ask for a job id in the current (or selected) queue and open it."""
        screen = self._top_dash_screen()
        queue = getattr(screen, "queue", None)
        if queue is None and isinstance(screen, OverviewScreen):
            queue = screen._selected()
        if queue is None:
            self.notify("no queue selected", severity="warning")
            return
        target: str = queue

        def opened(job_id: str | None) -> None:
            if job_id:
                self.open_job(target, job_id)

        self.push_screen(PromptScreen("Job id:"), opened)

    # -- actions, always confirmed first -----------------------------------------------------

    def _ask(
        self,
        title: str,
        body: Text,
        label: str,
        run: Callable[[], Awaitable[str]],
        typed: str | None = None,
    ) -> None:
        if self.read_only:
            self.notify("read-only mode: actions are off", severity="warning")
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.perform(run)

        self.push_screen(ConfirmScreen(title, body, label, typed), answered)

    def confirm_job_action(self, kind: str, queue: str, job_id: str) -> None:
        """Ask, then retry / discard / promote one job (on a dead-letter queue, retry is a
        replay to the job's origin queue)."""
        if kind == "retry" and is_dead_letter_queue(self, queue):
            self.run_worker(
                confirm_replay_ids(self, queue, [job_id]), group="actions", exit_on_error=False
            )
            return
        verbs: dict[str, tuple[str, Callable[[str, str], Awaitable[str]]]] = {
            "retry": ("Retry", self.actions.retry),
            "discard": ("Discard", self.actions.discard),
            "promote": ("Promote", self.actions.promote),
            "cancel": ("Cancel", self.actions.cancel),
        }
        label, call = verbs[kind]
        body = Text.assemble(
            f"{label} job ",
            display_text(job_id, limit=60),
            " of queue ",
            display_text(queue, limit=60),
            "?",
        )
        self._ask(f"{label} job", body, label, lambda: call(queue, job_id))

    def _count(self, queue: str, state: str) -> int:
        snapshot = self.snapshot.queue(queue) if self.snapshot else None
        return snapshot.counts.get(state) if snapshot else 0

    def confirm_retry_all(self, queue: str) -> None:
        """Ask (typed), then retry every failed job of the queue (replay, on a dead-letter
        queue)."""
        failed = self._count(queue, "failed")
        if is_dead_letter_queue(self, queue):
            confirm_replay_all(self, queue, failed)
            return
        body = Text.assemble(
            f"Retry all {failed} failed jobs of queue ", display_text(queue, limit=60), "?"
        )
        self._ask(
            "Retry all failed", body, "Retry all", lambda: self.actions.retry_all(queue), queue
        )

    def confirm_promote_all(self, queue: str) -> None:
        """Ask (typed), then run every delayed job of the queue now."""
        delayed = self._count(queue, "delayed")
        body = Text.assemble(
            f"Promote all {delayed} delayed jobs of queue ", display_text(queue, limit=60), "?"
        )
        self._ask(
            "Promote all delayed",
            body,
            "Promote all",
            lambda: self.actions.promote_all(queue),
            queue,
        )

    def confirm_change_priority(self, queue: str, job_id: str) -> None:
        """Ask for the new priority, then confirm and set it."""
        if self.read_only:
            self.notify("read-only mode: actions are off", severity="warning")
            return

        def chosen(answer: str | None) -> None:
            if answer is None:
                return
            priority = parse_priority(answer)
            body = Text.assemble(
                "Give job ",
                display_text(job_id, limit=60),
                " of queue ",
                display_text(queue, limit=60),
                f" priority {priority}?",
            )
            self._ask(
                "Change priority",
                body,
                "Change",
                lambda: self.actions.change_priority(queue, job_id, priority),
            )

        label = f"New priority (0 = none, 1 runs first, up to {MAX_PRIORITY}):"
        self.push_screen(PromptScreen(label, value="1", check=priority_error), chosen)

    def confirm_pause(self, queue: str) -> None:
        """Ask, then pause or resume the queue."""
        snapshot = self.snapshot.queue(queue) if self.snapshot else None
        pause = not (snapshot is not None and snapshot.paused)
        verb = "Pause" if pause else "Resume"
        body = Text.assemble(f"{verb} queue ", display_text(queue, limit=60), "?")
        self._ask(f"{verb} queue", body, verb, lambda: self.actions.set_paused(queue, pause))

    def confirm_clean(self, queue: str, state: str) -> None:
        """Ask for an age, count the jobs it covers, then ask (typed) and remove them."""
        if self.read_only:
            self.notify("read-only mode: actions are off", severity="warning")
            return

        def aged(answer: str | None) -> None:
            if answer is not None:
                self.count_then_confirm_clean(queue, state, parse_age(answer))

        label = f"Clean {state} jobs of {queue} finished longer ago than (30s, 15m, 2h, 7d, 0):"
        self.push_screen(PromptScreen(label, value="1h", check=age_error), aged)

    @work(group="actions", exit_on_error=False)
    async def count_then_confirm_clean(self, queue: str, state: str, older_than_ms: int) -> None:
        """Count exactly what a clean would remove, then ask for the typed confirmation."""
        total = await self.backend.count_finished(self.reader, queue, state, older_than_ms)
        count = min(total, CLEAN_LIMIT)
        if count == 0:
            self.notify(f"no {state} jobs older than {describe_age(older_than_ms)}")
            return
        body = Text.assemble(
            f"Remove {count} {state} jobs finished longer ago than "
            f"{describe_age(older_than_ms)} from queue ",
            display_text(queue, limit=60),
            "?",
        )
        if total > count:
            body.append(f" ({total - count} more stay: at most {CLEAN_LIMIT} at a time)")
        self._ask(
            f"Clean {state}",
            body,
            "Clean",
            lambda: self.actions.clean(queue, state, older_than_ms, CLEAN_LIMIT),
            queue,
        )

    @work(group="actions", exit_on_error=False)
    async def perform(self, run: Callable[[], Awaitable[str]]) -> None:
        """Run one confirmed action and report its outcome."""
        try:
            message = await run()
        except ReadOnlyError as exc:
            self.notify(str(exc), severity="warning")
            return
        except RedisError as exc:
            self.notify(f"action failed: {redact_string(str(exc))}", severity="error", markup=False)
            return
        self.notify(message, markup=False)
        self.monitor.refresh()
        screen = self._top_dash_screen()
        if isinstance(screen, QueueScreen):
            screen.load_page()
        elif isinstance(screen, JobScreen):
            screen.load()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """A failed read becomes a notification, never a traceback."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            text = redact_string(f"{type(error).__name__}: {error}")
            self.notify(text, severity="error", markup=False)
