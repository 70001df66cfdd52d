"""The one way Redis-sourced values reach the screen: redacted, truncated, inert ``Text``.

``display_text`` never interprets markup, and makes control characters, ANSI escapes, bidi
controls and zero-width characters visible instead of passing them to the terminal. It shows a
bounded window of a value (``offset``, ``limit``), so a 10 MB value costs what its window costs.
Credential shapes in free text are found from cheap anchors (``://``, ``bearer``, key names), so
redaction stays linear in the text it reads. ``mask_url`` hides the password of a connection URL.

Bytes read from Redis are decoded with ``surrogateescape`` (``from_redis``), so text that is not
UTF-8 goes back to the server as the bytes it came as (a job id addresses its own key); each such
byte is a lone surrogate in the ``str``, which ``display_text`` shows as ``\\xff`` and
``escaped`` turns into that text for anything else that leaves the process (a notice, a file).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.text import Text

DEFAULT_LIMIT = 2_000
"""Characters shown before a value is cut, unless the caller asks for another budget."""

_SLACK = 256
"""Extra characters redacted beyond the cut, so a secret is never cut in half and leaked."""

_BACK = 16_384
"""Characters read before a window that starts inside a value, so a secret that began before it
(a PEM block, a long token after its key name) is still masked where the window shows it."""

JSON_PARSE_LIMIT = 1_000_000
"""A JSON field longer than this is shown as stored text (in windows), not parsed."""

ESCAPE_STYLE = "reverse"
TRUNCATED_STYLE = "dim italic"
MASK = "••••"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|pwd|secret|token|api[_-]?key|(?<![a-z])auth(?![a-z])|authorization"
    r"|cookie|session|private[_-]?key|credential|signature|dsn",
    re.IGNORECASE,
)

_KEY_ANCHORS = ("pass", "pwd", "secret", "token", "api", "auth", "session", "signature", "cookie",
                "private", "credential", "dsn")  # fmt: skip
"""Where a key name of ``_KEY_NAME`` can start (lower case)."""
_KEY_NAME = (
    r"(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|authorization"
    r"|(?<![a-z])auth(?![a-z])|session(?:[_-]?(?:id|key|token))?|signature|cookie"
    r"|private[_-]?key|credential|dsn)"
)


@dataclass(frozen=True, slots=True)
class _Shape:
    """A credential shape in free text. It is looked for only where one of ``anchors`` (lower
    case) occurs, as ``pattern`` matched right there; its ``secret`` group is shown as ``mask``.
    Matching only at anchors keeps the cost linear in the text, whatever the text."""

    anchors: tuple[str, ...]
    pattern: re.Pattern[str]
    mask: str


_SHAPES: tuple[_Shape, ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    _Shape(
        ("://",),
        re.compile(r"(?<=[a-zA-Z0-9+.\-])://[^\s:/@\"']*:(?P<secret>[^\s@/\"']+)@"),
        "***",
    ),
    _Shape(
        ("bearer",),
        re.compile(r"(?<!\w)bearer\s+(?P<secret>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE),
        "***",
    ),
    _Shape(
        ("akia", "asia"),
        re.compile(r"(?<!\w)(?:AKIA|ASIA)(?P<secret>[0-9A-Z]{16})\b"),
        "*" * 16,
    ),
    _Shape(
        ("-----begin ",),
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?P<secret>.*?)"
            r"(?=-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        " *** ",
    ),
    # "password": "x", password=x, token: x (also inside JSON text that was not parsed); a value
    # masked by key already ("••••") is left as it is
    _Shape(
        _KEY_ANCHORS,
        re.compile(
            _KEY_NAME
            + r"""["']?\s*[:=]\s*(?!["']?••••)"""
            + r"""(?P<secret>"[^"]*"|'[^']*'|[^\s,;&}"']+)""",
            re.IGNORECASE,
        ),
        "***",
    ),
)

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

_FORMAT = (
    r"\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb\U000e0000-\U000e007f"
)
_SURROGATES = r"\ud800-\udfff"
"""Lone surrogates: a byte that was not UTF-8 (``surrogateescape``), or a JSON ``\\ud800``
escape. No terminal or strict UTF-8 encoder takes them."""
_UNSAFE = re.compile(r"[\x00-\x1f" + _FORMAT + _SURROGATES + "]")
_UNSAFE_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f" + _FORMAT + _SURROGATES + "]")
_SURROGATE = re.compile("[" + _SURROGATES + "]")
_REPR_SURROGATE = re.compile(r"(?<!\\)((?:\\\\)*)\\udc([89a-f][0-9a-f])")
"""``\\udcff`` in a ``repr`` (not after an escaped backslash): the byte 0xff, as Python writes
a lone surrogate of ``surrogateescape``."""


def from_redis(value: str | bytes) -> str:
    """A reply as ``str``, decoded the way the dashboard's clients decode: bytes that are not
    UTF-8 become lone surrogates, so encoding the text again (``surrogateescape``, as the
    clients do) gives back the same bytes: an id read from Redis addresses its own key."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    return value


def to_redis(text: str) -> bytes:
    """``text`` as the bytes the dashboard's clients send for it (the inverse of
    ``from_redis``)."""
    return text.encode("utf-8", errors="surrogateescape")


def not_utf8(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (or other lone surrogates): what a
    strict UTF-8 encode, like the engine's check of a job hash, refuses."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def _surrogate_text(char: str) -> str:
    """A lone surrogate as text: ``\\xff`` for a byte that was not UTF-8, else ``\\ud800``."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def escaped(text: str) -> str:
    """``text`` without lone surrogates: each byte that was not UTF-8 as the text ``\\xff``
    (as ``backslashreplace`` shows it). Safe to encode strictly (files, notices, the audit
    log); everything else in ``text`` is left as it is."""
    if not not_utf8(text):
        return text
    return _SURROGATE.sub(lambda match: _surrogate_text(match.group()), text)


_TYPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")
"""``\\xff`` as typed: a byte that was not UTF-8, written as ``escaped`` shows it."""


def unescaped(typed: str) -> str:
    """What the operator typed, as ``escaped`` showed it, back as the text read from Redis:
    each ``\\xff`` (0x80 to 0xff) becomes the byte it stands for, so an id that is not UTF-8
    can be typed as it is shown (the inverse of ``escaped`` for such bytes)."""
    if "\\x" not in typed:
        return typed
    return _TYPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), typed)


def quoted(text: str) -> str:
    """``repr(text)`` with each byte that was not UTF-8 written ``\\xff`` (not ``\\udcff``):
    quoted, control characters escaped, and safe to encode strictly."""
    written = repr(text)
    if "\\udc" not in written:
        return written
    return _REPR_SURROGATE.sub(r"\1\\x\2", written)


def _visible(char: str) -> str:
    """How one unsafe character is shown: a control picture, ``\\x9b``, ``\\xff`` (a byte
    that was not UTF-8) or ``<U+202E>``."""
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␛ for ESC, ␀ for NUL...
    if code == 0x7F:
        return "\u2421"  # ␡
    if code <= 0x9F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return _surrogate_text(char)
    return f"<U+{code:04X}>"


def _lowered(text: str) -> str:
    """``text`` in ASCII lower case, the same length (so positions in it are positions in
    ``text``; ``str.lower`` may change the length of non-ASCII text)."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _find_all(haystack: str, needle: str) -> Iterator[int]:
    index = haystack.find(needle)
    while index != -1:
        yield index
        index = haystack.find(needle, index + 1)


def secret_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int, str]]:
    """Where credential shapes hide secrets in ``text[start:end]``: sorted, non-overlapping
    ``(start, end, mask)`` spans, in ``text``'s positions. Linear: each shape is tried only at
    its anchors, and never again inside a match of its own."""
    end = len(text) if end is None else min(end, len(text))
    low = _lowered(text[start:end])
    found: list[tuple[int, int, str]] = []
    for shape in _SHAPES:
        anchors = sorted({start + i for needle in shape.anchors for i in _find_all(low, needle)})
        reach = start
        for anchor in anchors:
            if anchor < reach:
                continue
            match = shape.pattern.match(text, anchor, end)
            if match is not None:
                found.append((match.start("secret"), match.end("secret"), shape.mask))
                reach = match.end()
    return _merged(found)


def _merged(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Overlapping spans as one: the outer one's mask if it holds the other, else ``***``."""
    merged: list[tuple[int, int, str]] = []
    for begin, finish, mask in sorted(spans, key=lambda span: (span[0], -span[1])):
        if begin == finish:
            continue
        if merged and begin < merged[-1][1]:
            last_begin, last_finish, _ = merged[-1]
            if finish > last_finish:
                merged[-1] = (last_begin, finish, "***")
            continue
        merged.append((begin, finish, mask))
    return merged


def _masked(text: str, start: int, end: int, spans: list[tuple[int, int, str]]) -> str:
    """``text[start:end]`` with each span that reaches into it replaced by its mask (whole,
    also where the span starts before ``start`` or ends after ``end``)."""
    out: list[str] = []
    position = start
    for begin, finish, mask in spans:
        if finish <= position or begin >= end:
            continue
        if begin > position:
            out.append(text[position:begin])
        out.append(mask)
        position = finish
    if position < end:
        out.append(text[position:end])
    return "".join(out)


def redact_string(text: str) -> str:
    """Hide credential shapes inside free text: URL passwords, bearer tokens, keys, ``k=v``."""
    return _masked(text, 0, len(text), secret_spans(text))


def notice_text(value: object, limit: int = 300) -> str:
    """A notification's text: redacted, cut, controls and bytes that were not UTF-8 made
    visible (``notify`` takes ``str``)."""
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


@dataclass(frozen=True, slots=True)
class Window:
    """Part of a value as redacted plain text, and how much of the value lies around it."""

    text: str
    before: int = 0
    """Characters of the value before the window."""
    after: int = 0
    """Characters of the value after the window."""
    extra_bytes: int = 0
    """Bytes of a long ``bytes`` value that were not even decoded."""

    def note(self) -> str:
        """``"120 more chars"`` (and ``"and 5 more bytes"``), or ``""`` when nothing follows."""
        notes = [f"{self.after} more chars"] if self.after else []
        if self.extra_bytes:
            notes.append(f"{self.extra_bytes} more bytes")
        return " and ".join(notes)


def plain_text(value: object, *, pretty: bool = False) -> str:
    """The whole of any value as plain text, before redaction of free text and any cut: a
    string as it is, bytes decoded, anything else as JSON with secret keys' values masked."""
    if isinstance(value, bytes | bytearray):
        return from_redis(bytes(value))
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    indent = 2 if pretty else None
    return json.dumps(redact(value), ensure_ascii=False, default=str, indent=indent)


def window_of(text: str, offset: int, limit: int) -> Window:
    """``text[offset:offset + limit]`` redacted; the secrets found around it are masked too.

    Costs what the window costs (plus ``_SLACK`` after it and ``_BACK`` before it), however
    long ``text`` is."""
    size = len(text)
    start = min(max(offset, 0), size)
    end = min(size, start + max(limit, 0))
    around = secret_spans(text, max(0, start - _BACK) if start else 0, min(size, end + _SLACK))
    return Window(_masked(text, start, end, around), before=start, after=size - end)


def to_plain(
    value: object, *, limit: int = DEFAULT_LIMIT, pretty: bool = False, offset: int = 0
) -> Window:
    """Any value as redacted plain text: the ``limit`` characters from ``offset``."""
    if isinstance(value, bytes | bytearray) and offset == 0:
        head = bytes(value[: (limit + _SLACK) * 4])  # never decode more than a window needs
        window = window_of(from_redis(head), 0, limit)
        return Window(window.text, 0, window.after, len(value) - len(head))
    return window_of(plain_text(value, pretty=pretty), offset, limit)


def display_text(
    value: object,
    *,
    limit: int = DEFAULT_LIMIT,
    single_line: bool = True,
    pretty: bool = False,
    style: str = "",
    say_how_much: bool = True,
    offset: int = 0,
) -> Text:
    """Render ``value`` as inert ``Text``: redacted, cut to ``limit`` chars, escapes visible.

    With ``single_line`` newlines and tabs are shown as symbols too, so a table cell stays one
    line. Markup in the value is never interpreted. A cut value ends in "… (N more chars)", or
    in a bare "…" within ``limit`` when ``say_how_much`` is off (a table cell of fixed width);
    a window from ``offset`` > 0 starts with "…".
    """
    if not say_how_much:
        limit = max(1, limit - 1)
    window = to_plain(value, limit=limit, pretty=pretty, offset=offset)
    plain = window.text
    text = Text(style=style, no_wrap=single_line, end="")
    if window.before:
        text.append("… ", style=TRUNCATED_STYLE)
    unsafe = _UNSAFE if single_line else _UNSAFE_KEEP_LINES
    position = 0
    for match in unsafe.finditer(plain):
        if match.start() > position:
            text.append(plain[position : match.start()])
        text.append(_visible(match.group()), style=ESCAPE_STYLE)
        position = match.end()
    if position < len(plain):
        text.append(plain[position:])
    cut = window.note()
    if cut:
        text.append(f"… ({cut})" if say_how_much else "…", style=TRUNCATED_STYLE)
    return text


def field_text(raw: str | None, *, pretty: bool = True) -> str:
    """A JSON-encoded hash field as the plain text the detail view shows: parsed, secret keys'
    values masked and pretty printed if it is JSON (up to ``JSON_PARSE_LIMIT`` characters),
    else the stored text itself. Free-text redaction happens per window (``display_text``)."""
    if raw is None:
        return ""
    if len(raw) > JSON_PARSE_LIMIT:
        return raw
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(parsed, str):
        return parsed
    return plain_text(parsed, pretty=pretty)


def display_json_field(
    raw: str | None, *, limit: int = DEFAULT_LIMIT, pretty: bool = True, offset: int = 0
) -> Text:
    """Render a JSON-encoded hash field: parsed and redacted if it is JSON, else as text."""
    if raw is None:
        return Text("")
    text = field_text(raw, pretty=pretty)
    return display_text(text, limit=limit, single_line=False, offset=offset)


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
