"""The hostile-string corpus (RELIABILITY.md 3.5) and a check that a screen rendered it inert;
reading what a view shows whole (a job's detail page by page, the notices, wrapping ignored)."""

from __future__ import annotations

import json

from support.screen import until
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widgets._toast import Toast

from dashboard.app import DashboardApp
from dashboard.screens.job import JobScreen

CORPUS: tuple[str | bytes, ...] = (
    "[bold]x",
    "[/]",
    "[b",
    "[[nested]]",
    "x[1][2]",
    "[@click=app.quit]x[/]",
    "[link=https://evil.example]docs[/link]",
    "\x1b[2J\x1b[H",
    "\x1b]0;owned\x07",
    "\x1b]52;c;ZXZpbA==\x07",
    "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\",
    "\x9b31m",
    "\x1bPq#0;2;0;0;0\x1b\\",  # DCS
    "\x07",
    "safe\roverwritten",
    "back\bspace",
    "nul\x00byte",
    "\u202egnp.exe",
    "zw\u200bj\u200dx\u2060\ufeff",
    b"\xff\xfe",  # invalid UTF-8
    "漢字 😀 width",
    "e\u0301\u0302 combining",
)
TEN_MB_LINE = "y" * (10 * 1024 * 1024)

FORBIDDEN = (
    {chr(c) for c in range(0x20) if chr(c) != "\n"}
    | {chr(c) for c in range(0x7F, 0xA0)}
    | set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
    | set("\u200b\u200c\u200d\u2060\ufeff")
    | {chr(c) for c in range(0xD800, 0xE000)}  # lone surrogates: no terminal takes them
)


def as_stored(value: str | bytes) -> str:
    """How a value reads back through the dashboard's clients: bytes that are not UTF-8 as
    lone surrogates (``surrogateescape``), so the text encodes back to the same bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


def stand_in(value: str | bytes) -> str:
    """Text the engine takes in place of a value: bytes that are not UTF-8 written out as the
    printable text ``\\xff`` (which a view shows just as it shows the bytes themselves)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value


def assert_inert(app: DashboardApp) -> str:
    """No control, bidi or zero-width character, and no link or action from data, in any
    segment on screen; returns the screen's text."""
    lines = []
    for strip in app.screen._compositor.render_strips():  # type: ignore[attr-defined]
        for segment in strip:
            bad = FORBIDDEN.intersection(segment.text)
            assert not bad, f"raw {sorted(bad)!r} reached the screen in {segment.text!r}"
            style = segment.style
            if style is not None:
                assert not (style.link and "evil" in style.link), style.link
                click = str(style.meta.get("@click", "")) if style.meta else ""
                assert "app.quit" not in click and "app.bell" not in click, click
        lines.append(strip.text)
    for notification in app._notifications:
        assert not FORBIDDEN.intersection(str(notification.message))
    return "\n".join(lines)


def _visible_char(char: str) -> str:
    """How RELIABILITY.md 3.5 rule 2 says one character is shown: C0 as its control picture
    (``\\x1b`` as ␛), DEL as ␡, C1 as ``\\x9b``, bidi and zero-width as ``<U+202E>``, a byte
    that was not UTF-8 (a lone surrogate as read) as ``\\xff``."""
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)
    if code == 0x7F:
        return "\u2421"
    if 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    if char in FORBIDDEN:
        return f"<U+{code:04X}>"
    return char


def shown(value: str | bytes, *, in_json: bool = False) -> str:
    """The text a view must show for ``value``: read back as stored (invalid UTF-8 as ``\\xff``),
    written as a JSON string's inside when ``in_json`` (so ESC reads ``\\u001b``), then every
    unsafe character made visible. Written from the rule, not from ``dashboard.sanitize``."""
    text = as_stored(value)
    if in_json:
        text = json.dumps(text, ensure_ascii=False)[1:-1]
    return "".join(_visible_char(char) for char in text)


MARKUP = tuple(
    value for value in CORPUS if isinstance(value, str) and "[" in value and shown(value) == value
)
"""The corpus strings that are markup (and nothing else) if a widget parsed them: shown as they
are, brackets and all."""


async def open_job_screen(
    pilot: Pilot[None], app: DashboardApp, queue: str, job_id: str
) -> JobScreen:
    """Open a job's screen and wait until the job and its links are read."""
    app.open_job(queue, job_id)
    await until(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None)
    screen = app.screen
    assert isinstance(screen, JobScreen)
    await until(pilot, lambda: screen.links is not None or screen.detail is None)
    await pilot.pause(0.05)
    return screen


def squeezed(text: str) -> str:
    """``text`` without whitespace: a value the view wrapped over lines still reads as one."""
    return "".join(text.split())


def region_text(app: DashboardApp, region: Region) -> str:
    """What the terminal shows inside ``region`` (cut by cells, so wide characters count
    right), line by line."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strips[y].crop(region.x, region.right).text for y in region.line_range)


async def whole_detail(pilot: Pilot[None], app: DashboardApp) -> str:
    """Every line the job detail shows, read page by page (``pagedown``) with every page of the
    screen checked inert; each line once, in order."""
    scroll = app.screen.query_one("#detail-scroll", VerticalScroll)
    lines = region_text(app, scroll.scrollable_content_region).split("\n")
    for _ in range(40):
        assert_inert(app)
        before = scroll.scroll_y
        await pilot.press("pagedown")
        await pilot.pause(0.02)
        moved = round(scroll.scroll_y - before)
        if moved <= 0:
            return "\n".join(lines)
        page = region_text(app, scroll.scrollable_content_region).split("\n")
        lines += page[-moved:]  # the last page moves less than a page: only its new lines
    raise AssertionError("the job detail did not end within 40 pages")


DETAIL_TITLES = (
    "data",
    "progress",
    "return value",
    "failed reason",
    "stacktrace",
    "logs",
    "options",
)


def detail_sections(text: str) -> dict[str, str]:
    """The text of each section of a job detail read by ``whole_detail`` (``"header"``: the
    lines before the first title), without whitespace."""
    sections: dict[str, list[str]] = {"header": []}
    current = "header"
    for line in text.split("\n"):
        if line.strip() in DETAIL_TITLES:
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line)
    return {title: squeezed("".join(lines)) for title, lines in sections.items()}


def toasts_text(app: DashboardApp) -> str:
    """What the notices on screen show, wrapping ignored."""
    toasts = app.screen.query(Toast)
    return "".join(squeezed(region_text(app, toast.content_region)) for toast in toasts)
