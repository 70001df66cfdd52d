"""The audit log: one JSON line per confirmed action, appended to a file of the operator's own.

Who (``$USER`` and the client address of ``$SSH_CONNECTION``), when, the action, the queue, the
exact scope confirmed, and the outcome. It lives in the user's state directory
(``$XDG_STATE_HOME/corral/audit.log``, else ``~/.local/state/corral/audit.log``) or where
``CORRAL_AUDIT_LOG`` / ``--audit-log`` says; directory 0700, file 0600. Queue names, job ids and
outcomes are stored as JSON strings (control characters escaped) and outcomes redacted; no job
data is ever written. A byte that was not UTF-8 (a lone surrogate, as the dashboard reads it) is
written as the text ``\\xff``, so every line is valid UTF-8 JSON that any reader takes. A log
that cannot be written is reported, never fatal.
"""

from __future__ import annotations

import datetime
import getpass
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from dashboard.sanitize import escaped, redact_string

ENV_PATH = "CORRAL_AUDIT_LOG"


@dataclass(frozen=True, slots=True)
class ActionScope:
    """What an operator confirmed: the action, its queue, and the exact jobs it covers."""

    action: str
    queue: str
    scope: str


def default_path() -> Path:
    """``$CORRAL_AUDIT_LOG``, else ``corral/audit.log`` under the XDG state directory."""
    explicit = os.environ.get(ENV_PATH)
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "corral" / "audit.log"


def who() -> dict[str, str | None]:
    """The operator: login name, host, and the SSH client address when over SSH."""
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (containers)
            user = f"uid {os.getuid()}"
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    return {"user": user, "host": socket.gethostname(), "ssh_client": ssh[0] if ssh else None}


class AuditLog:
    """Appends entries to one file; ``record`` returns an error message instead of raising."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()

    def record(self, scope: ActionScope, outcome: str) -> str | None:
        """Append one entry; None when written, else why it was not."""
        entry = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            **who(),
            "action": scope.action,
            "queue": scope.queue,
            "scope": scope.scope,
            "outcome": redact_string(outcome),
        }
        # the environment ($USER) is decoded with surrogateescape too
        written = {key: escaped(value) if value else value for key, value in entry.items()}
        line = json.dumps(written, ensure_ascii=True) + "\n"
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as out:
                out.write(line)
        except OSError as exc:
            return f"audit log {self.path} not written: {exc.strerror or exc}"
        return None
