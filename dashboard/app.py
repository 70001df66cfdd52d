"""``DashboardApp``: owns the monitor, the read and action connections, and the screens.

The monitor runs in one exclusive worker and posts ``SnapshotReady``; the app hands each
snapshot to the screen on top (unless frozen). Actions ask first, then run in their own worker
(``ConfirmedActions``: confirmation, batches and progress, outcome, audit entry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from redis.asyncio import Redis
from rich.text import Text
from textual import on, work
from textual.app import App
from textual.worker import Worker, WorkerState

from dashboard.actions import JobActions
from dashboard.audit import ActionScope, AuditLog
from dashboard.backend import Backend
from dashboard.bulk import BULK_LIMIT, BulkRun, Selection, select_jobs
from dashboard.bulk_asks import (
    PROMOTE_ALL,
    REPLAY_ALL,
    RETRY_ALL,
    BulkKind,
    nothing_to_do,
    question,
    scope,
)
from dashboard.confirmed import ConfirmedActions
from dashboard.durations import age_error, describe_age, parse_age
from dashboard.keymap import APP_KEYS, bindings
from dashboard.messages import SnapshotReady
from dashboard.model import DashboardSnapshot, JobDetail, JobPage
from dashboard.monitor import QueueMonitor
from dashboard.notices import Announcer
from dashboard.notifications import CONFIG_KEY, can_offer, enable_command, flags_to_enable
from dashboard.palette import KeyCommands
from dashboard.priorities import MAX_PRIORITY, parse_priority, priority_error
from dashboard.replay import confirm_replay_ids, is_dead_letter_queue
from dashboard.sanitize import display_text, escaped, mask_url, notice_text, quoted, unescaped
from dashboard.screens.base import DashScreen
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.prompt import PromptScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.stalled import STUCK_AFTER_MS
from engine.connection import TlsOptions
from engine.health import Thresholds

CLEAN_LIMIT = 10_000


def _client(url: str) -> Redis:
    """A client for reads or actions (TLS options, if any, ride in ``url``)."""
    client: Redis = Redis.from_url(
        url,
        decode_responses=True,
        # bytes that are not UTF-8 read as lone surrogates and are sent back as the same bytes,
        # so an id read from Redis addresses its own key; display_text shows them as \xff
        encoding_errors="surrogateescape",
        socket_connect_timeout=3.0,
        socket_timeout=10.0,
    )
    return client


class DashboardApp(ConfirmedActions):
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
        audit_log: AuditLog | None = None,
        stuck_after_ms: int = STUCK_AFTER_MS,
        allow_unsafe_eviction: bool = False,
        tls: TlsOptions | None = None,
    ) -> None:
        super().__init__()
        self.stuck_after_ms = stuck_after_ms
        """Active longer than this is "stuck" on the stalled screen (``T`` there changes it)."""
        self.audit = audit_log if audit_log is not None else AuditLog()
        self.url = url
        self.masked_url = mask_url(url)
        connect_url = tls.apply(url) if tls is not None else url  # ValueError: a bad option
        self.backend = backend
        self.read_only = read_only
        self.allow_unsafe_eviction = allow_unsafe_eviction
        """R5 overridden: act even while the server's eviction policy may lose jobs."""
        self.monitor = QueueMonitor(
            backend,
            connect_url,
            queues=queues,
            poll_interval=poll_interval,
            thresholds=thresholds,
            read_only=read_only,
        )
        self.announcer = Announcer(bell)
        self.reader = _client(connect_url)
        self.actions = JobActions(
            backend,
            None if read_only else _client(connect_url),
            read_only,
            allow_unsafe_eviction=allow_unsafe_eviction,
        )
        self.snapshot: DashboardSnapshot | None = None
        self.frozen = False
        self._offered_live = False

    def validate_title(self, title: object) -> str:
        """The title without lone surrogates (a URL given as bytes that are not UTF-8): it is
        written into screenshots, which are encoded strictly."""
        return escaped(str(title))

    def validate_sub_title(self, sub_title: object) -> str:
        """The subtitle without lone surrogates, as the title."""
        return escaped(str(sub_title))

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
        # the action layer refuses to act while the policy read at the last (re)connect is unsafe
        self.actions.server_policy = message.snapshot.maxmemory_policy
        self.actions.server_replica = message.snapshot.replica
        notices, ring = self.announcer.new(message.snapshot)
        for notice in notices:
            self.notify(notice.text, severity=notice.severity, markup=False)
        if ring:
            self.bell()
        if not self.frozen:
            self._show(message.snapshot)
        if not self._offered_live and can_offer(message.snapshot, self.read_only):
            self._offered_live = True  # once: the status bar keeps the hint
            command = enable_command(message.snapshot.notify_flags or "")
            self.notify(
                f"Keyspace notifications are off, so the dashboard polls once a second. "
                f"K runs {command} after you confirm.",
                timeout=15,
                markup=False,
            )

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
        notes = getattr(screen, "HELP_NOTES", ())
        self.push_screen(HelpScreen(keys, self.read_only, notes))

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
            if job_id:  # typed as shown: a byte that was not UTF-8 as \xff
                self.open_job(target, unescaped(job_id))

        self.push_screen(PromptScreen("Job id:"), opened)

    # -- actions, always confirmed first -----------------------------------------------------

    def confirm_job_action(
        self, kind: str, queue: str, job_id: str, state: str | None = None
    ) -> None:
        """Ask, then retry / discard / promote / cancel one job; ``state`` is the state the
        operator saw it in (a retry acts only while the job is still in it). On a dead-letter
        queue, retry is a replay to the job's origin queue."""
        if kind == "retry" and is_dead_letter_queue(self, queue):
            self.run_worker(
                confirm_replay_ids(self, queue, [job_id]), group="actions", exit_on_error=False
            )
            return
        verbs: dict[str, tuple[str, Callable[[str, str], Awaitable[str]]]] = {
            "retry": ("Retry", lambda q, j: self.actions.retry(q, j, state or "failed")),
            "discard": ("Discard", self.actions.discard),
            "promote": ("Promote", self.actions.promote),
            "cancel": ("Cancel", self.actions.cancel),
        }
        label, call = verbs[kind]
        seen = f"{state} " if state else ""
        body = Text.assemble(
            f"{label} {seen}job ",
            display_text(job_id, limit=60),
            " of queue ",
            display_text(queue, limit=60),
            "?",
        )
        scope = ActionScope(kind, queue, f"job {quoted(job_id)}" + (f" ({state})" if state else ""))
        self._ask(f"{label} job", body, label, lambda: call(queue, job_id), scope=scope)

    def confirm_retry_all(self, queue: str) -> None:
        """Read the failed ids (bounded), ask (typed), then retry exactly those, in batches
        (on a dead-letter queue: replay them to their origin queues)."""
        kind = REPLAY_ALL if is_dead_letter_queue(self, queue) else RETRY_ALL
        self.confirm_bulk(kind, queue)

    def confirm_replay_all(self, queue: str) -> None:
        """Read the dead letters' ids (bounded), ask (typed), then replay exactly those."""
        self.confirm_bulk(REPLAY_ALL, queue)

    def confirm_promote_all(self, queue: str) -> None:
        """Read the delayed ids (bounded), ask (typed), then promote exactly those still
        delayed, in batches."""
        self.confirm_bulk(PROMOTE_ALL, queue)

    def confirm_bulk(self, kind: BulkKind, queue: str) -> None:
        """A bulk action over the jobs of its state as they are now; refused when read-only."""
        if self.refuse_action():
            return
        self.select_then_confirm(kind, queue)

    @work(exclusive=True, group="select", exit_on_error=False)  # pressed twice: one read
    async def select_then_confirm(self, kind: BulkKind, queue: str) -> None:
        """The jobs of the kind's state as they are now are the scope the operator confirms."""
        selection = await select_jobs(self.backend, self.reader, queue, kind.state, BULK_LIMIT)
        if not selection.ids:
            self.notify(nothing_to_do(kind), markup=False)
            return
        act = self._bulk_action(kind)
        self._ask_bulk(
            kind.title,
            question(kind, queue, selection, BULK_LIMIT),
            kind.label,
            queue,
            scope(kind, queue, selection),
            len(selection.ids),
            lambda run: act(selection, run),
        )

    def _bulk_action(self, kind: BulkKind) -> Callable[[Selection, BulkRun], Awaitable[str]]:
        actions = {
            RETRY_ALL: self.actions.retry_selected,
            PROMOTE_ALL: self.actions.promote_selected,
            REPLAY_ALL: self.actions.replay_selected,
        }
        return actions[kind]

    def confirm_enable_notifications(self) -> None:
        """Ask, then run the exact CONFIG SET that turns keyspace notifications on."""
        snapshot = self.snapshot
        if not can_offer(snapshot, self.read_only) or snapshot is None:
            if self.read_only:
                self.notify("read-only mode: actions are off", severity="warning")
            else:
                self.notify("nothing to turn on: live already, or CONFIG is not allowed")
            return
        current = snapshot.notify_flags or ""
        flags = flags_to_enable(current)
        body = Text(f"Run CONFIG SET {CONFIG_KEY} {flags} on ")
        body.append_text(display_text(self.masked_url, limit=60))
        body.append(f"?\nIt changes the server's setting (now {quoted(current)}) for every client.")

        async def run() -> str:
            outcome = await self.actions.enable_notifications(flags)
            self.monitor.recheck_notifications()
            return outcome

        scope = ActionScope("config set", "", f"{CONFIG_KEY} {flags} (was {quoted(current)})")
        self._ask("Turn on live updates", body, "Run CONFIG SET", run, scope=scope)

    def confirm_change_priority(self, queue: str, job_id: str) -> None:
        """Ask for the new priority, then confirm and set it."""
        if self.refuse_action():
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
        scope = ActionScope(verb.lower(), queue, f"queue {quoted(queue)}")
        self._ask(
            f"{verb} queue", body, verb, lambda: self.actions.set_paused(queue, pause), scope=scope
        )

    def confirm_clean(self, queue: str, state: str) -> None:
        """Ask for an age, count the jobs it covers, then ask (typed) and remove them."""
        if self.refuse_action():
            return

        def aged(answer: str | None) -> None:
            if answer is not None:
                self.count_then_confirm_clean(queue, state, parse_age(answer))

        label = (
            f"Clean {state} jobs of {notice_text(queue, limit=40)} finished longer ago than "
            "(30s, 15m, 2h, 7d, 0):"
        )
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
        age = describe_age(older_than_ms)
        scope = ActionScope(f"clean {state}", queue, f"{count} {state} jobs older than {age}")
        self._ask_bulk(
            f"Clean {state}",
            body,
            "Clean",
            queue,
            scope,
            count,
            lambda run: self.actions.clean(queue, state, older_than_ms, count, run),
        )

    def after_action(self) -> None:
        """Recount, and re-read the page or job on screen."""
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
            text = notice_text(f"{type(error).__name__}: {error}")
            self.notify(text, severity="error", markup=False)
