"""``ConfirmedActions``: the app's way to act: ask, run what was confirmed, say how it went,
and leave one audit entry per confirmed action.

``_ask`` opens a confirmation (Cancel focused) and runs the action once confirmed;
``_ask_bulk`` also needs the queue name typed and runs the action in batches behind a
progress modal with a stop key. Read-only dashboards, and write-mode dashboards on a server
whose eviction policy may lose jobs (R5), are refused before anything is asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from rich.text import Text
from textual import work
from textual.app import App

from dashboard.actions import ActionsOff, JobActions
from dashboard.audit import ActionScope, AuditLog
from dashboard.backend import FeatureUnavailable
from dashboard.bulk import BulkRun
from dashboard.sanitize import display_text, notice_text
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.progress import ProgressScreen


class ConfirmedActions(App[None]):
    """Mixed into ``DashboardApp``, which sets these attributes."""

    actions: JobActions
    audit: AuditLog
    read_only: bool

    def refuse_action(self) -> bool:
        """Say why and return True when no action may run now (read-only mode, a replica, or a
        server that may evict jobs); False when actions may go on."""
        reason = self.actions.refusal()
        if reason is None:
            return False
        self.notify(notice_text(reason), severity="warning", markup=False, timeout=10)
        return True

    def _ask(
        self,
        title: str,
        body: Text,
        label: str,
        run: Callable[[], Awaitable[str]],
        typed: str | None = None,
        scope: ActionScope | None = None,
    ) -> None:
        """Confirm, then run; every confirmed action leaves one audit entry (``scope``, or the
        title and body as asked)."""
        if self.refuse_action():
            return
        asked = scope if scope is not None else ActionScope(title, "", body.plain)

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.perform(run, asked)

        self.push_screen(ConfirmScreen(title, body, label, typed), answered)

    def _ask_bulk(
        self,
        title: str,
        body: Text,
        label: str,
        queue: str,
        scope: ActionScope,
        total: int,
        job: Callable[[BulkRun], Awaitable[str]],
    ) -> None:
        """A typed confirmation, then the action in batches behind a progress modal."""
        if self.refuse_action():
            return

        def answered(confirmed: bool | None) -> None:
            if confirmed:
                self.perform_bulk(title, scope, total, job)

        self.push_screen(ConfirmScreen(title, body, label, queue), answered)

    @work(group="actions", exit_on_error=False)
    async def perform_bulk(
        self,
        title: str,
        scope: ActionScope,
        total: int,
        job: Callable[[BulkRun], Awaitable[str]],
    ) -> None:
        """Run a confirmed bulk action with its progress on screen and a key to stop it; the
        modal then shows the outcome until the operator closes it."""
        run = BulkRun(total)
        progress = ProgressScreen(Text.assemble(title, " · ", display_text(scope.queue)), run)
        await self.push_screen(progress)
        outcome = None
        try:
            outcome = await self._execute(lambda: job(run), scope, run)
        finally:
            if progress in self.screen_stack:
                if outcome is None:
                    progress.dismiss()
                else:
                    progress.finish(outcome)

    @work(group="actions", exit_on_error=False)
    async def perform(self, run: Callable[[], Awaitable[str]], scope: ActionScope) -> None:
        """Run one confirmed action and report its outcome."""
        await self._execute(run, scope)

    async def _execute(
        self,
        run: Callable[[], Awaitable[str]],
        scope: ActionScope,
        progress: BulkRun | None = None,
    ) -> str | None:
        """Run, notify the outcome, write the one audit entry, then refresh what is shown; the
        outcome (as shown), or None if the action was refused before it ran."""
        try:
            message = await run()
        except ActionsOff as exc:  # read-only, or the server turned unsafe meanwhile
            self.notify(notice_text(exc), severity="warning", markup=False)
            return None
        except asyncio.CancelledError:  # the dashboard closed while the action ran
            done = f" after {progress.done:,} of {progress.total:,}" if progress else ""
            self._audit(scope, f"interrupted{done}: the dashboard closed")
            raise
        except (RedisError, FeatureUnavailable) as exc:  # refused by the server or the backend
            failed = notice_text(f"action failed: {exc}")
            self.notify(failed, severity="error", markup=False)
            self._audit(scope, failed)
            return failed
        shown = notice_text(message)
        self.notify(shown, markup=False)
        self._audit(scope, message)
        self.after_action()
        return shown

    def after_action(self) -> None:
        """Show what an action changed (the app re-reads what is on screen)."""

    def _audit(self, scope: ActionScope, outcome: str) -> None:
        problem = self.audit.record(scope, outcome)
        if problem is not None:
            self.notify(notice_text(problem), severity="warning", markup=False)
