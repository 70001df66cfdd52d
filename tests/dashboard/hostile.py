"""The hostile-string corpus (RELIABILITY.md 3.5) and a check that a screen rendered it inert."""

from __future__ import annotations

from dashboard.app import DashboardApp

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
)


def as_stored(value: str | bytes) -> str:
    """How a value reads back through the dashboard's clients (invalid UTF-8 escaped)."""
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
