"""Regenerate ``screenshots/`` from a real demo workload.

Starts a private server and the ``corral demo`` workload (producers and real ``corral worker``
processes), runs the dashboard headless while jobs complete, fail, retry and wait delayed, and
kills the reports worker twice: once early and restarted, so its jobs are detected as stalled,
and once more near the end, so the stalled view shows active jobs that lost their lock. It also
adds two job schedulers and a flow (a report waiting for a thumbnail and an email) to the demo's
queues. Each screen (overview, a queue's failed tab, the retry-all confirmation, a failed job,
the stalled view, the workers, the schedulers, the dead letters, a flow, help) is saved as SVG
at every size, then converted to PNG with the first converter found: the ``cairosvg`` package,
``rsvg-convert`` (Debian: ``librsvg2-bin``) or headless Chromium.

With ``--bullmq`` it shoots queues that the real BullMQ runs in Node instead (6.7, and 5.81 for
one legacy queue; npm-installed into the ignored ``tests/.node/``): the overview, a queue's failed
tab, a failed job, and a refused pause of the BullMQ 5 queue, as ``bullmq-*.svg``.

Run from the repository root::

    python scripts/make_screenshots.py [--out screenshots] [--run-for 18] [--no-png] [--bullmq]
"""

from __future__ import annotations

import argparse
import asyncio
import html
import importlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.cells import cell_len, get_character_cell_size
from textual.pilot import Pilot
from textual.screen import Screen

from corral.demo import WORKERS, Workload
from corral.demo_producer import EMAILS, REPORTS, THUMBNAILS, WEBHOOKS, WEBHOOKS_DEAD
from dashboard.app import DashboardApp
from dashboard.bullmq.backend import BullMQBackend
from dashboard.corral_backend import CorralBackend
from dashboard.model import QueueSnapshot
from dashboard.sanitize import mask_url
from dashboard.screens.confirm import ConfirmScreen
from dashboard.screens.dead_letters import DeadLettersScreen
from dashboard.screens.flow import FlowScreen
from dashboard.screens.help import HelpScreen
from dashboard.screens.job import JobScreen
from dashboard.screens.overview import OverviewScreen
from dashboard.screens.queue import QueueScreen
from dashboard.screens.schedulers import SchedulersScreen
from dashboard.screens.stalled import StalledScreen
from dashboard.screens.workers import WorkersScreen
from dashboard.widgets.queue_table import QueueTable
from engine import FlowProducer, Queue
from engine.server import EmbeddedServer

if TYPE_CHECKING:
    from support.bullmq_node import NodeDriver

SIZES: tuple[tuple[int, int], ...] = ((80, 24), (120, 36))
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "screenshots"
FAILED_TAB = "5"  # the queue screen's key for the failed state
WAIT_S = 15.0
"""How long to wait for the dashboard to show something before giving up."""
PNG_SCALE = 2.0
"""PNG pixels per SVG unit, so text stays sharp on high-density screens."""


ViewT = TypeVar("ViewT", bound=Screen[None])


class ScreenshotError(RuntimeError):
    """The dashboard did not reach a screen it was driven to."""


# -- the workload's reports worker ----------------------------------------------------------


def _reports_proc(workload: Workload) -> subprocess.Popen[bytes] | None:
    return workload.procs.get(f"worker:{REPORTS}")


def kill_reports_worker(workload: Workload) -> None:
    """SIGKILL the reports worker: its running jobs keep their state but lose their lock."""
    proc = _reports_proc(workload)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def restart_reports_worker(workload: Workload) -> None:
    """Start the reports worker again; it finds the killed one's jobs stalled."""
    worker = next(w for w in WORKERS if w.queue == REPORTS)
    workload._spawn_worker(worker)


# -- schedulers and a flow for their views -------------------------------------------------


async def add_schedulers_and_flow(url: str) -> str:
    """Two schedulers on the emails queue and a flow whose root is in reports; return the id
    of the flow's first thumbnail, whose flow the flow screenshot draws."""
    async with Queue(EMAILS, url) as emails:
        await emails.upsert_job_scheduler(
            "weekday-digest",
            pattern="0 8 * * 1-5",
            tz="Europe/Berlin",
            job_name="digest",
            job_data={"to": "team@example.com"},
        )
        await emails.upsert_job_scheduler(
            "quarter-hourly",
            every=15 * 60_000,
            job_name="status-mail",
            job_data={"to": "ops@example.com"},
        )
    async with FlowProducer(url) as producer:
        flow = await producer.add(
            {
                "name": "monthly-report",
                "queue": REPORTS,
                "data": {"pages": 6},
                "children": [
                    {"name": "cover", "queue": THUMBNAILS, "data": {"image": "cover.png"}},
                    {"name": "chart", "queue": THUMBNAILS, "data": {"image": "chart.png"}},
                    {"name": "notify", "queue": EMAILS, "data": {"to": "cfo@example.com"}},
                ],
            }
        )
    return flow.children[0].ref.id


# -- driving the dashboard ------------------------------------------------------------------


async def until(pilot: Pilot[None], what: str, check: Callable[[], bool]) -> None:
    """Let the app run until ``check()`` holds; ``ScreenshotError`` after ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while not check():
        if time.monotonic() > deadline:
            raise ScreenshotError(f"the dashboard did not show {what} within {WAIT_S:.0f} s")
        await pilot.pause(0.05)


_SVG_TEXT = re.compile(r'(<text [^>]*?textLength=")([\d.]+)("[^>]*>)([^<]*)(</text>)')


def without_local_paths(svg: str) -> str:
    """The SVG with this checkout's directory (and the home directory) taken out of the text,
    as in the stack traces the job screen shows; each shortened run keeps its cell width."""
    prefixes = [(f"{ROOT}/", ""), (f"{Path.home()}/", "~/")]

    def shorten(match: re.Match[str]) -> str:
        before = html.unescape(match[4])
        after = before
        for prefix, replacement in prefixes:
            after = after.replace(prefix, replacement)
        if after == before:
            return match[0]
        length = float(match[2]) * len(after) / len(before)
        text = html.escape(after, quote=False).replace("\xa0", "&#160;")
        return f"{match[1]}{length:g}{match[3]}{text}{match[5]}"

    return _SVG_TEXT.sub(shorten, svg)


@dataclass
class Shooter:
    """Saves the app's current screen as ``NAME-WxH.svg`` at every size."""

    app: DashboardApp
    pilot: Pilot[None]
    out: Path
    sizes: Sequence[tuple[int, int]]
    saved: list[Path]

    async def shoot(self, name: str) -> None:
        """Resize to each size, let the layout settle, save."""
        for width, height in self.sizes:
            await self.pilot.resize_terminal(width, height)
            await self.pilot.pause(0.4)
            svg = self.out / f"{name}-{width}x{height}.svg"
            self.app.save_screenshot(filename=svg.name, path=str(self.out))
            svg.write_text(without_local_paths(svg.read_text("utf-8")), "utf-8")
            self.saved.append(svg)
        await self.pilot.resize_terminal(*self.sizes[0])
        await self.pilot.pause(0.2)

    async def view(
        self,
        queue: str | None,
        key: str,
        kind: type[ViewT],
        name: str,
        ready: Callable[[ViewT], bool],
    ) -> None:
        """From the overview: select ``queue`` (if any), press ``key``, wait for a ``kind``
        screen that is ``ready``, shoot it as ``name``, and go back."""
        pilot, app = self.pilot, self.app
        await until(pilot, "the overview", lambda: isinstance(app.screen, OverviewScreen))
        if queue is not None:
            await select_queue(pilot, app, queue)
        await pilot.press(key)
        await until(pilot, f"the {name} view", lambda: isinstance(app.screen, kind))
        view = app.screen
        assert isinstance(view, kind)
        await until(pilot, f"the {name} loaded", lambda: ready(view))
        await self.shoot(name)
        await pilot.press("escape")


def _failed_queue(app: DashboardApp) -> str:
    """The webhooks queue if it has failed jobs, else the queue with the most (a dead-letter
    queue's jobs are dead letters, shot on their own screen)."""
    snapshot = app.snapshot.queues if app.snapshot else ()
    queues: list[QueueSnapshot] = [q for q in snapshot if not q.dead_letter]
    webhooks = next((q for q in queues if q.name == WEBHOOKS), None)
    if webhooks is not None and webhooks.counts.failed:
        return WEBHOOKS
    return max(queues, key=lambda q: q.counts.failed).name


async def select_queue(pilot: Pilot[None], app: DashboardApp, name: str) -> None:
    """Move the overview's cursor to ``name`` with ``k`` and ``j``."""
    table = app.screen.query_one(QueueTable)
    await pilot.press(*["k"] * table.row_count)
    for _ in range(table.row_count):
        if table.selected_queue == name:
            break
        await pilot.press("j")
    await until(pilot, f"queue {name} selected", lambda: table.selected_queue == name)


async def drive(
    url: str, workload: Workload, out: Path, run_for: float, sizes: Sequence[tuple[int, int]]
) -> list[Path]:
    """Run the dashboard while the workload runs; save every screen; return the SVGs."""
    thumbnail = await add_schedulers_and_flow(url)
    app = DashboardApp(url, CorralBackend())
    app.title = f"Corral {mask_url(url)}"
    saved: list[Path] = []
    async with app.run_test(size=sizes[0]) as pilot:
        shooter = Shooter(app, pilot, out, sizes, saved)
        await until(
            pilot, "the queues", lambda: app.snapshot is not None and bool(app.snapshot.queues)
        )
        # history: a fifth of the way in, kill the reports worker; after its lock (5 s) has
        # expired, start it again so it finds the jobs stalled; near the end kill it once more,
        # so the stalled view shows active jobs without a lock.
        await pilot.pause(run_for * 0.2)
        kill_reports_worker(workload)
        await pilot.pause(7.0)
        restart_reports_worker(workload)
        await pilot.pause(max(run_for * 0.8 - 7.0 - 6.0, 4.0))
        kill_reports_worker(workload)
        await pilot.pause(6.0)

        await until(pilot, "the overview", lambda: isinstance(app.screen, OverviewScreen))
        await shooter.shoot("overview")

        failed = _failed_queue(app)
        await select_queue(pilot, app, failed)
        await pilot.press("enter")
        await until(pilot, f"queue {failed}", lambda: isinstance(app.screen, QueueScreen))
        await pilot.press(FAILED_TAB)
        queue_screen = app.screen
        assert isinstance(queue_screen, QueueScreen)
        await until(
            pilot,
            "the failed tab",
            lambda: queue_screen.page is not None and queue_screen.page.state == "failed",
        )
        await shooter.shoot("queue-failed")

        await pilot.press("R")  # retry all failed: the confirmation, cancelled
        await until(pilot, "the retry-all question", lambda: isinstance(app.screen, ConfirmScreen))
        await shooter.shoot("retry-all-confirm")
        await pilot.press("escape")
        await until(pilot, f"queue {failed} again", lambda: app.screen is queue_screen)

        await pilot.press("enter")
        await until(pilot, "a job", lambda: isinstance(app.screen, JobScreen))
        job_screen = app.screen
        assert isinstance(job_screen, JobScreen)
        await until(pilot, "the job's detail", lambda: job_screen.detail is not None)
        await shooter.shoot("job")

        await pilot.press("escape", "escape")
        await shooter.view(REPORTS, "s", StalledScreen, "stalled", lambda v: v.loaded)
        await shooter.view(None, "w", WorkersScreen, "workers", lambda v: bool(v.live))
        await shooter.view(
            EMAILS, "S", SchedulersScreen, "schedulers", lambda v: v.page is not None
        )
        await shooter.view(
            WEBHOOKS_DEAD,
            "D",
            DeadLettersScreen,
            "dead-letters",
            lambda v: v.page is not None and v.page.total > 0,
        )
        await until(pilot, "the overview again", lambda: isinstance(app.screen, OverviewScreen))
        app.open_job(THUMBNAILS, thumbnail)
        await until(pilot, "the thumbnail job", lambda: isinstance(app.screen, JobScreen))
        await pilot.press("t")
        await until(pilot, "the flow view", lambda: isinstance(app.screen, FlowScreen))
        flow = app.screen
        assert isinstance(flow, FlowScreen)
        await until(pilot, "the flow", lambda: flow.loaded)
        await shooter.shoot("flow")

        await pilot.press("escape", "escape")
        await until(pilot, "the overview again", lambda: isinstance(app.screen, OverviewScreen))
        await pilot.press("question_mark")
        await until(pilot, "help", lambda: isinstance(app.screen, HelpScreen))
        await shooter.shoot("help")
    return saved


# -- queues Node BullMQ runs ------------------------------------------------------------------

BULL_QUEUES = ("emails", "webhooks", "invoices")
"""BullMQ 6 runs emails (all states) and webhooks (paused); BullMQ 5 runs invoices."""


async def _node_counts(node: NodeDriver, queue: str, **want: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        counts = await node.call("counts", queue=queue)
        if all(counts[state] >= n for state, n in want.items()):
            return
        if time.monotonic() > deadline:
            raise ScreenshotError(f"Node's {queue} did not reach {want}: {counts}")
        await asyncio.sleep(0.1)


async def bullmq_workload(node6: NodeDriver, node5: NodeDriver) -> None:
    """Completed, failed, active, waiting, prioritized and delayed jobs on emails, a paused
    webhooks queue with jobs waiting, and a BullMQ 5 invoices queue, all run by Node."""
    emails, webhooks, invoices = BULL_QUEUES
    await node6.call("worker", queue=emails, workerName="mailer-1")
    for i in range(24):
        await node6.call("add", queue=emails, name="welcome", data={"to": f"user{i}@example.com"})
    for i in range(3):
        await node6.call("add", queue=emails, name="bounce", data={"mode": "fail", "i": i})
    await _node_counts(node6, emails, completed=24, failed=3)
    await node6.call("add", queue=emails, name="newsletter", data={"mode": "hold"})
    await _node_counts(node6, emails, active=1)
    for i in range(4):
        await node6.call("add", queue=emails, name="receipt", data={"order": 1000 + i})
    await node6.call("add", queue=emails, name="password-reset", opts={"priority": 1})
    for minutes in (5, 30):
        await node6.call("add", queue=emails, name="reminder", opts={"delay": minutes * 60_000})
    await node6.call("worker", queue=webhooks, workerName="hooks-1")
    await node6.call("add", queue=webhooks, name="ping", data={"url": "https://example.com/h"})
    await _node_counts(node6, webhooks, completed=1)
    await node6.call("pause", queue=webhooks)
    for i in range(5):
        await node6.call("add", queue=webhooks, name="deliver", data={"event": i})
    await node5.call("worker", queue=invoices, workerName="billing-v5")
    for i in range(8):
        await node5.call("add", queue=invoices, name="invoice", data={"number": i})
    await node5.call("add", queue=invoices, name="invoice", data={"mode": "fail"})
    await _node_counts(node5, invoices, completed=8, failed=1)


async def _invoices_trickle(node5: NodeDriver) -> None:
    """An invoice every quarter second, one in ten failing, for the live throughput."""
    number = 100
    while True:
        number += 1
        data = {"mode": "fail"} if number % 10 == 0 else {"number": number}
        await node5.call("add", queue=BULL_QUEUES[2], name="invoice", data=data)
        await asyncio.sleep(0.25)


async def drive_bullmq(url: str, out: Path, sizes: Sequence[tuple[int, int]]) -> list[Path]:
    """Run the Node workload, then the dashboard on it (acting allowed); save its screens."""
    sys.path.insert(0, str(ROOT / "tests"))  # the tests' driver of the real BullMQ in Node
    from support.bullmq_fixtures import install_bullmq
    from support.bullmq_node import NodeDriver

    node6 = await NodeDriver(install_bullmq("6"), url).start()
    node5 = await NodeDriver(install_bullmq("5"), url).start()
    saved: list[Path] = []
    try:
        await bullmq_workload(node6, node5)
        app = DashboardApp(url, BullMQBackend())
        app.title = f"Corral · BullMQ bull {mask_url(url)}"
        trickle = asyncio.create_task(_invoices_trickle(node5))
        async with app.run_test(size=sizes[0], notifications=True) as pilot:
            shooter = Shooter(app, pilot, out, sizes, saved)
            await until(
                pilot,
                "the queues",
                lambda: app.snapshot is not None and len(app.snapshot.queues) == 3,
            )
            await pilot.pause(8.0)  # some seconds of the trickle in the jobs/s chart
            await shooter.shoot("bullmq-overview")

            await select_queue(pilot, app, "emails")
            await pilot.press("enter")
            await until(pilot, "queue emails", lambda: isinstance(app.screen, QueueScreen))
            await pilot.press(FAILED_TAB)
            queue_screen = app.screen
            assert isinstance(queue_screen, QueueScreen)
            await until(
                pilot,
                "the failed tab",
                lambda: queue_screen.page is not None and len(queue_screen.page.rows) == 3,
            )
            await shooter.shoot("bullmq-queue-failed")

            await pilot.press("enter")
            await until(pilot, "a job", lambda: isinstance(app.screen, JobScreen))
            job_screen = app.screen
            assert isinstance(job_screen, JobScreen)
            await until(pilot, "the job's detail", lambda: job_screen.detail is not None)
            await shooter.shoot("bullmq-job")

            await pilot.press("escape", "escape")
            await until(pilot, "the overview again", lambda: isinstance(app.screen, OverviewScreen))
            await select_queue(pilot, app, "invoices")
            await pilot.press("p")
            await pilot.pause(0.5)  # past the confirmation's debounce
            await pilot.press("tab", "enter")
            await until(
                pilot,
                "the refusal",
                lambda: any("pause refused" in str(n.message) for n in app._notifications),
            )
            await shooter.shoot("bullmq-pause-refused")
        trickle.cancel()
    finally:
        await node6.close()
        await node5.close()
    return saved


# -- SVG to PNG ------------------------------------------------------------------------------

Converter = Callable[[Path, Path], None]
MONO_FONT = "monospace"
"""Only a generic family: cairosvg uses the first family named, and fontconfig maps this one to
an installed monospace font (DejaVu Sans Mono on Debian)."""
BRAILLE_FONT = "DejaVu Sans"
"""For the chart's braille dots, which common monospace fonts lack; cairosvg does not fall back
to another font per glyph, so the text runs holding them name this one."""
_TEXT = re.compile(r"<text ([^>]*)>([^<]*)</text>")
_RUN = re.compile(r'x="([\d.]+)"(.*?)textLength="([\d.]+)"')
_BRAILLE = re.compile("[\u2800-\u28ff]")


def _svg_size(svg: str) -> tuple[float, float]:
    found = re.search(r'viewBox="\s*[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s*"', svg)
    if found is None:
        raise ValueError("the SVG has no viewBox")
    return float(found[1]), float(found[2])


def _local_fonts(svg: str) -> str:
    """The SVG with its web font swapped for installed fonts: offline converters cannot fetch
    it, and every glyph must come from a font that has it."""
    svg = re.sub(r"@font-face\s*\{[^}]*\}", "", svg)
    svg = re.sub(r"font-family:\s*\"?Fira Code\"?,\s*monospace", f"font-family: {MONO_FONT}", svg)

    def braille_font(match: re.Match[str]) -> str:
        if not _BRAILLE.search(match[2]):
            return match[0]
        return f'<text style="font-family: {BRAILLE_FONT}" {match[1]}>{match[2]}</text>'

    return _TEXT.sub(braille_font, svg)


def _cells_placed(svg: str) -> str:
    """Every character of a text run placed on its own cell, with one ``x`` per character.

    Converters that ignore ``textLength`` draw a run with the font's own advance, which is not
    exactly the terminal's cell width: long runs drift, and box corners miss their edges.
    """

    def place(match: re.Match[str]) -> str:
        attrs, text = match[1], html.unescape(match[2])
        run = _RUN.search(attrs)
        if run is None or not text:
            return match[0]
        start, length = float(run[1]), float(run[3])
        cell = length / max(cell_len(text), 1)
        xs, column = [], 0
        for char in text:
            xs.append(f"{start + column * cell:.1f}")
            column += get_character_cell_size(char)
        placed = _RUN.sub(lambda m: f'x="{" ".join(xs)}"{m[2]}', attrs, count=1)
        return f"<text {placed}>{match[2]}</text>"

    return _TEXT.sub(place, svg)


def _with_cairosvg(svg: Path, png: Path) -> None:
    cairosvg = importlib.import_module("cairosvg")
    cairosvg.svg2png(
        bytestring=_cells_placed(_local_fonts(svg.read_text("utf-8"))).encode("utf-8"),
        write_to=str(png),
        scale=PNG_SCALE,
    )


def _with_rsvg(svg: Path, png: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / svg.name
        text = _cells_placed(_local_fonts(svg.read_text("utf-8")))
        # librsvg drops the leading spaces of a run unless told to keep them
        text = text.replace("<svg ", '<svg xml:space="preserve" ', 1)
        local.write_text(text, "utf-8")
        subprocess.run(
            ["rsvg-convert", "--zoom", str(PNG_SCALE), "--output", str(png), str(local)],
            check=True,
            capture_output=True,
        )


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _with_chromium(svg: Path, png: Path) -> None:
    browser = _chromium()
    assert browser is not None
    text = _local_fonts(svg.read_text("utf-8"))
    width, height = _svg_size(text)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(
            "<!doctype html><html><body style='margin:0'>" + text + "</body></html>", "utf-8"
        )
        subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--force-device-scale-factor={PNG_SCALE}",
             f"--window-size={round(width)},{round(height)}",
             f"--screenshot={png.resolve()}", page.as_uri()],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip


def find_converter() -> tuple[str, Converter] | None:
    """The first SVG-to-PNG converter available here, with its name."""
    try:
        importlib.import_module("cairosvg")
    except (ImportError, OSError):  # OSError: the package is there but libcairo is not
        pass
    else:
        return "cairosvg", _with_cairosvg
    if shutil.which("rsvg-convert"):
        return "rsvg-convert", _with_rsvg
    if _chromium() is not None:
        return "headless Chromium", _with_chromium
    return None


def convert_all(svgs: Sequence[Path]) -> int:
    """Write a PNG beside each SVG; 1 if no converter is available."""
    found = find_converter()
    if found is None:
        print(
            "no SVG-to-PNG converter found; the SVGs are written but no PNG. Install one of: "
            "'pip install cairosvg' (needs the cairo library), 'apt-get install librsvg2-bin' "
            "(rsvg-convert), or Chromium",
            file=sys.stderr,
        )
        return 1
    name, convert = found
    print(f"converting {len(svgs)} SVGs to PNG with {name}")
    for svg in svgs:
        convert(svg, svg.with_suffix(".png"))
    return 0


# -- main ------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}")
    return int(width), int(height)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--run-for",
        type=float,
        default=18.0,
        help="seconds of workload before the screenshots (at least 15)",
    )
    parser.add_argument(
        "--size",
        type=_size,
        action="append",
        dest="sizes",
        help="terminal size WIDTHxHEIGHT, repeatable (default: 80x24 and 120x36)",
    )
    parser.add_argument("--no-png", action="store_true", help="write the SVGs only")
    parser.add_argument(
        "--bullmq", action="store_true", help="shoot queues Node BullMQ runs (needs node and npm)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the server and the workload, take the screenshots, stop everything, convert."""
    args = parse_args(argv)
    sizes: Sequence[tuple[int, int]] = args.sizes or SIZES
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    server = EmbeddedServer(notify_keyspace_events="KA").start()  # live view, like the demo
    if args.bullmq:
        try:
            svgs = asyncio.run(drive_bullmq(server.url, out, sizes))
        except ScreenshotError as exc:
            print(f"make_screenshots: {exc}", file=sys.stderr)
            return 1
        finally:
            server.close()
        for svg in svgs:
            print(svg)
        return 0 if args.no_png else convert_all(svgs)
    workload = Workload(server.url)
    try:
        workload.start()
        # the demo kills the reports worker at random times; here it happens at known times
        # (see ``drive``), so end the demo's killer thread: ``stop()`` sets this event anyway
        workload.stopping.set()
        svgs = asyncio.run(drive(server.url, workload, out, max(args.run_for, 15.0), sizes))
    except ScreenshotError as exc:
        print(f"make_screenshots: {exc}", file=sys.stderr)
        return 1
    finally:
        workload.stop()
        server.close()
    for svg in svgs:
        print(svg)
    return 0 if args.no_png else convert_all(svgs)


if __name__ == "__main__":
    sys.exit(main())
