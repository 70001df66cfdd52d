"""The server password, never from the command line: a file (``--password-file``, which only
its owner may read), ``$CORRAL_REDIS_PASSWORD``, or a prompt that does not echo when the URL
names a user and no password. ``with_password`` puts it into the URL the dashboard connects
with (shown masked everywhere).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

ENV_PASSWORD = "CORRAL_REDIS_PASSWORD"


class CredentialError(ValueError):
    """A password source that cannot be used, with what is wrong with it."""


def read_password_file(path: Path) -> str:
    """The first line of ``path``; refused if group or others may read or write it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CredentialError(
                f"--password-file {path}: mode {stat.S_IMODE(mode):04o} lets others read it;"
                f" run chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialError(f"--password-file {path}: {exc.strerror or exc}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise CredentialError(f"--password-file {path}: the file is empty")
    return password


def _userinfo(url: str) -> tuple[str | None, bool]:
    """The URL's user name (if any) and whether it carries a password."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return None, False
    userinfo = netloc.rpartition("@")[0]
    user, has_password, _ = userinfo.partition(":")
    return user or None, bool(has_password)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in its userinfo (the user name kept, if any)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user, _ = _userinfo(url)
    netloc = f"{quote(user or '', safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def resolve_url(
    url: str,
    password_file: Path | None = None,
    environ: dict[str, str] | None = None,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """The URL to connect with: its own password, else the file's, the environment's, or the
    prompt's (only when the URL names a user). ``CredentialError`` for a conflict or bad file."""
    env = os.environ if environ is None else environ
    user, has_password = _userinfo(url)
    if password_file is not None:
        if has_password:
            raise CredentialError("the URL has a password and --password-file gives one: use one")
        return with_password(url, read_password_file(password_file))
    if has_password:
        return url
    if env.get(ENV_PASSWORD):
        return with_password(url, env[ENV_PASSWORD])
    if user is not None and prompt is not None:
        host = urlsplit(url).netloc.rpartition("@")[2]
        return with_password(url, prompt(f"Password for {user}@{host}: "))
    return url
