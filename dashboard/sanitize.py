"""The one way Redis-sourced values reach the screen: redacted, truncated, inert ``Text``.

``display_text`` never interprets markup, and makes control characters, ANSI escapes, bidi
controls and zero-width characters visible instead of passing them to the terminal.
``mask_url`` hides the password of a connection URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.text import Text

DEFAULT_LIMIT = 2_000
"""Characters shown before a value is cut, unless the caller asks for another budget."""

_SLACK = 256
"""Extra characters redacted beyond the cut, so a secret is never cut in half and leaked."""

ESCAPE_STYLE = "reverse"
TRUNCATED_STYLE = "dim italic"
MASK = "••••"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api[_-]?key|(?<![a-z])auth(?![a-z])|authorization"
    r"|cookie|session|private[_-]?key|credential|signature|dsn",
    re.IGNORECASE,
)

_STRING_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@\"']*:)[^\s@/\"']+@"), r"\1***@"),
    (re.compile(r"(\bBearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE), r"\1***"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1****************"),
    (
        re.compile(
            r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
        ),
        r"-----BEGIN \1PRIVATE KEY----- *** \2",
    ),
    # "password": "x", password=x, token: x (also inside JSON text that was not parsed); the
    # name's prefix is bounded so a long run of word characters costs linear time, not quadratic
    (
        re.compile(
            r"""(["']?(?:[\w\-]{0,40}?)(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|authorization"""
            r"""|(?<![a-z])auth(?![a-z])|session(?:[_-]?(?:id|key|token))?|signature|cookie"""
            r"""|private[_-]?key|credential|dsn)["']?\s*[:=]\s*)(?!["']?••••)"""
            r"""("[^"]*"|'[^']*'|[^\s,;&}"']+)""",
            re.IGNORECASE,
        ),
        r"\1***",
    ),
)

_FORMAT = (
    r"\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
)
_UNSAFE = re.compile(r"[\x00-\x1f" + _FORMAT + "]")
_UNSAFE_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f" + _FORMAT + "]")


def _visible(char: str) -> str:
    """How one unsafe character is shown: a control picture, ``\\x9b`` or ``<U+202E>``."""
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␀ for NUL...
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0x9F:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def redact_string(text: str) -> str:
    """Hide credential shapes inside free text: URL passwords, bearer tokens, keys, ``k=v``."""
    for pattern, replacement in _STRING_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def notice_text(value: object, limit: int = 300) -> str:
    """A notification's text: redacted, cut, controls made visible (``notify`` takes ``str``)."""
    return display_text(value, limit=limit).plain


def _mask_value(value: Any) -> str:
    size = len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
    return f"{MASK} ({size} chars)"


def redact(value: Any) -> Any:
    """A copy of a JSON value with secret-looking keys' values masked, at any depth."""
    if isinstance(value, Mapping):
        return {
            key: _mask_value(item)
            if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, "")
            else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_string(value)
    return value


def to_plain(value: object, *, limit: int = DEFAULT_LIMIT, pretty: bool = False) -> tuple[str, str]:
    """Turn any value into redacted plain text cut to ``limit``, and a note of what was cut."""
    extra_bytes = 0
    if isinstance(value, bytes | bytearray):
        window = bytes(value[: (limit + _SLACK) * 4])
        extra_bytes = len(value) - len(window)
        text = window.decode("utf-8", errors="backslashreplace")
    elif isinstance(value, str):
        text = value
    elif value is None:
        text = ""
    else:
        indent = 2 if pretty else None
        text = json.dumps(redact(value), ensure_ascii=False, default=str, indent=indent)
    head = redact_string(text[: limit + _SLACK])
    more = len(text) - min(len(text), limit + _SLACK)
    if len(head) > limit:
        more += len(head) - limit
        head = head[:limit]
    notes = [f"{more} more chars"] if more else []
    if extra_bytes:
        notes.append(f"{extra_bytes} more bytes")
    return head, " and ".join(notes)


def display_text(
    value: object,
    *,
    limit: int = DEFAULT_LIMIT,
    single_line: bool = True,
    pretty: bool = False,
    style: str = "",
    say_how_much: bool = True,
) -> Text:
    """Render ``value`` as inert ``Text``: redacted, cut to ``limit`` chars, escapes visible.

    With ``single_line`` newlines and tabs are shown as symbols too, so a table cell stays one
    line. Markup in the value is never interpreted. A cut value ends in "… (N more chars)", or
    in a bare "…" within ``limit`` when ``say_how_much`` is off (a table cell of fixed width).
    """
    if not say_how_much:
        limit = max(1, limit - 1)
    plain, cut = to_plain(value, limit=limit, pretty=pretty)
    text = Text(style=style, no_wrap=single_line, end="")
    unsafe = _UNSAFE if single_line else _UNSAFE_KEEP_LINES
    position = 0
    for match in unsafe.finditer(plain):
        if match.start() > position:
            text.append(plain[position : match.start()])
        text.append(_visible(match.group()), style=ESCAPE_STYLE)
        position = match.end()
    if position < len(plain):
        text.append(plain[position:])
    if cut:
        text.append(f"… ({cut})" if say_how_much else "…", style=TRUNCATED_STYLE)
    return text


def display_json_field(raw: str | None, *, limit: int = DEFAULT_LIMIT, pretty: bool = True) -> Text:
    """Render a JSON-encoded hash field: parsed and redacted if it is JSON, else as text."""
    if raw is None:
        return Text("")
    if len(raw) <= 1_000_000:
        try:
            parsed = json.loads(raw)
        except ValueError:
            return display_text(raw, limit=limit, single_line=False)
        if isinstance(parsed, str):
            return display_text(parsed, limit=limit, single_line=False)
        return display_text(parsed, limit=limit, single_line=False, pretty=pretty)
    return display_text(raw, limit=limit, single_line=False)


def mask_url(url: str) -> str:
    """The URL with its password (and any ``password=`` query value) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_string(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            netloc = f"{user}:***@{host}"
        elif user and not parts.scheme.startswith("unix"):
            # redis://secret@host means the password only (no ACL user name).
            netloc = f"***@{host}" if parts.scheme.startswith("redis") else netloc
    query = re.sub(r"(?i)((?:^|&)password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
