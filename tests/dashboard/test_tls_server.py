"""Z3 against a server's own TLS (Debian's ``redis-server``, see ``support.tls_server``): the
engine's clients, the dashboard and ``corral dash``/``corral worker`` connect with the right CA
(and, where the server asks for one, a client certificate), and run and show a real workload;
a wrong CA, an expired certificate, a certificate for another host, a plaintext client on the
TLS port, a TLS client on the plaintext port, a missing client certificate and a wrong password
each fail with their own one-line message, within the connect timeout, never a hang or a
traceback, and the password shows nowhere; a TLS client whose host does not answer at all is
told it timed out, not that the port has no TLS."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pilot import SIZE, notices, until, visible_text
from support.tls_server import Pki, ServerBinary, TlsServer, make_pki, server_binary_or_skip
from support.workers import WorkerProcess, running_worker, wait_until

from bench.terminal import PtyProgram
from dashboard.app import DashboardApp
from dashboard.conn_errors import (
    CLIENT_CERT_REQUIRED,
    PLAINTEXT_ON_TLS,
    PROBE_TIMEOUT_S,
    RESET_AFTER_HANDSHAKE,
    TLS_ON_PLAINTEXT,
    connect,
    describe_error,
    greet,
)
from dashboard.corral_backend import CorralBackend
from dashboard.credentials import ENV_PASSWORD
from engine import Job, Queue
from engine.connection import TlsOptions, make_client

pytestmark = pytest.mark.timeout(90)

PASSWORD = "tls-pw-5521"
WRONG_PASSWORD = "wrong-pw-7730"
CONNECT_TIMEOUT = 3.0
"""The dashboard's connect timeout (``dashboard.monitor``)."""
SLACK = 3.0
"""Scheduling slack on a loaded machine."""
REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_CERT = (CLIENT_CERT_REQUIRED, RESET_AFTER_HANDSHAKE)
"""What a client without the certificate the server asks for is told: TLS 1.3 ends the
client's handshake before the server checks it, so the server's alert comes on the first read,
and now and then only the reset behind it does."""


@pytest.fixture(scope="session")
def tls_binary() -> ServerBinary:
    """The TLS-capable ``redis-server`` (fetched once; a skip, or a failure in CI, without)."""
    return server_binary_or_skip()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The certificates the module's servers and clients use."""
    return make_pki(tmp_path_factory.mktemp("pki"))


ServerMaker = Callable[..., TlsServer]


@pytest.fixture
def tls_server(tls_binary: ServerBinary, pki: Pki, tmp_path: Path) -> Iterator[ServerMaker]:
    """Start ``TlsServer``s (each with the ACL user ``ops``, password ``PASSWORD``); all are
    stopped, and their logs checked for the password, at teardown."""
    started: list[TlsServer] = []

    def make(
        *, cert: Path | None = None, plain_port: bool = False, auth_clients: bool = False
    ) -> TlsServer:
        directory = tmp_path / f"server-{len(started)}"
        server = TlsServer(
            tls_binary, pki, directory, cert=cert, plain_port=plain_port, auth_clients=auth_clients
        )
        started.append(server.start())
        server.add_user("ops", PASSWORD)
        return server

    yield make
    for server in started:
        server.stop()
        assert PASSWORD not in server.log() and WRONG_PASSWORD not in server.log()


def _verified(pki: Pki, *, client_cert: bool = False) -> TlsOptions:
    if client_cert:
        return TlsOptions(ca_cert=str(pki.ca), cert=str(pki.client_cert), key=str(pki.server_key))
    return TlsOptions(ca_cert=str(pki.ca))


async def noop(job: Job) -> int:
    """Finish at once."""
    return 1


# -- the right CA: a real workload over TLS, shown live -----------------------------------------


async def test_dashboard_shows_a_workload_run_over_tls(
    tls_server: ServerMaker, pki: Pki, queue_name: str
) -> None:
    server = tls_server()
    tls = _verified(pki)
    url = tls.apply(server.url(f"ops:{PASSWORD}"))
    client, owned = make_client(url)
    try:
        assert owned and await client.ping()
        assert (await client.acl_whoami()) == "ops"
    finally:
        await client.aclose()
    async with Queue(queue_name, url) as queue:
        await queue.add_bulk([("send", {"i": i}) for i in range(5)])
        async with running_worker(queue_name, noop, url):
            await wait_until(lambda: _completed(queue, 5), within=20)
            app = DashboardApp(
                server.url(f"ops:{PASSWORD}"),
                CorralBackend(),
                queues=[queue_name],
                read_only=True,
                poll_interval=0.2,
                tls=tls,
            )
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: _shown_completed(app, queue_name) == 5)
                await queue.add_bulk([("send", {"i": i}) for i in range(5, 12)])
                await until(pilot, lambda: _shown_completed(app, queue_name) == 12)
                await pilot.pause(0.3)
                text = visible_text(app)
                assert app.snapshot is not None and app.snapshot.error is None
                assert "rediss://ops:***@127.0.0.1" in text and queue_name in text
                assert PASSWORD not in text + notices(app)


async def test_corral_dash_on_a_terminal_shows_counts_over_tls(
    tls_server: ServerMaker, pki: Pki, queue_name: str
) -> None:
    server = tls_server()
    async with Queue(queue_name, _verified(pki).apply(server.url(f"ops:{PASSWORD}"))) as queue:
        await queue.add_bulk([("send", {"i": i}) for i in range(7)])
        argv = [*_dash_argv(server.url("ops"), queue_name), "--tls-ca-cert", str(pki.ca)]
        program = await PtyProgram.start(argv, cwd=REPO_ROOT, env={ENV_PASSWORD: PASSWORD})
        async with program:
            await program.wait_for(lambda lines: _wait_column(lines, queue_name) == "7", 60, "7")
            await queue.add("send", {"i": 7})
            await program.wait_for(lambda lines: _wait_column(lines, queue_name) == "8", 30, "8")
            assert PASSWORD not in program.text() and "ops:***@" in program.text()
            program.send("q")
            assert await asyncio.wait_for(program.proc.wait(), 20) == 0


async def test_mutual_tls_dashboard_and_corral_worker(
    tls_server: ServerMaker, pki: Pki, queue_name: str, tmp_path: Path
) -> None:
    """With ``--tls-auth-clients yes``: the client certificate gets the dashboard and a
    ``corral worker`` (``--tls-cert``/``--tls-key``) in; the worker runs the jobs."""
    server = tls_server(auth_clients=True)
    mutual = _verified(pki, client_cert=True)
    url = server.url(f"ops:{PASSWORD}")
    async with Queue(queue_name, mutual.apply(url)) as queue:
        await queue.add_bulk([("j", {"n": i}) for i in range(3)])
        flags = ["--tls-ca-cert", str(pki.ca), "--tls-cert", str(pki.client_cert)]
        worker = WorkerProcess(
            "support.jobs:noop",
            queue_name,
            url,  # the worker takes its password from the URL (or $REDIS_URL) only
            extra_args=[*flags, "--tls-key", str(pki.server_key)],
            log_file=tmp_path / "worker.log",
        )
        try:
            await wait_until(lambda: _completed(queue, 3), within=30)
            app = DashboardApp(
                url, CorralBackend(), queues=[queue_name], read_only=True, tls=mutual
            )
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: _shown_completed(app, queue_name) == 3)
                assert app.snapshot is not None and app.snapshot.error is None
            worker.signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            worker.stop()
        output = worker.output()
        assert PASSWORD not in output and "Traceback" not in output


async def _completed(queue: Queue, count: int) -> bool:
    return (await queue.get_totals())[0] >= count


def _shown_completed(app: DashboardApp, queue: str) -> int | None:
    snapshot = app.snapshot.queue(queue) if app.snapshot is not None else None
    return None if snapshot is None else snapshot.counts.completed


def _dash_argv(url: str, queue: str, *, read_only: bool = True) -> list[str]:
    argv = [sys.executable, "-m", "corral", "dash", "--redis", url, "--queue", queue]
    return [*argv, "--read-only"] if read_only else argv


def _wait_column(lines: list[str], queue: str) -> str | None:
    """The overview's wait cell for ``queue``."""
    for line in lines:
        cells = line.split()
        if len(cells) > 1 and cells[0] == queue:
            return cells[1]
    return None


# -- each failure, named ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One way to fail: how the server runs, how the client connects, what must be said."""

    certificate: str = "server"
    """The server's certificate: ``server`` (valid), ``expired`` or ``elsewhere``."""
    trust: str = "ca"
    """The CA the client gives: ``ca`` or ``other_ca``; ``none`` connects without TLS."""
    port: str = "tls"
    """``tls`` or ``plain`` (the server then has a plaintext port too)."""
    auth_clients: bool = False
    password: str = PASSWORD
    expected: str = ""


CASES = {
    "wrong-ca": Case(trust="other_ca", expected="TLS certificate verify failed: unknown CA"),
    "expired": Case(
        certificate="expired",
        expected="TLS certificate verify failed: the server's certificate has expired",
    ),
    "another-host": Case(
        certificate="elsewhere",
        expected="TLS certificate verify failed: the certificate is not for this host name",
    ),
    "plaintext-on-tls-port": Case(trust="none", expected=PLAINTEXT_ON_TLS),
    "tls-on-plaintext-port": Case(port="plain", expected=TLS_ON_PLAINTEXT),
    # the alert, or (TLS 1.3, a few % of runs) the reset that follows it: see CLIENT_CERT
    "no-client-certificate": Case(auth_clients=True, expected="client certificate"),
    "wrong-password": Case(
        password=WRONG_PASSWORD, expected="authentication failed (wrong user or password)"
    ),
}


def _case_server(make: ServerMaker, pki: Pki, case: Case) -> TlsServer:
    cert = {"expired": pki.expired_cert, "elsewhere": pki.elsewhere_cert}.get(case.certificate)
    return make(cert=cert, plain_port=case.port == "plain", auth_clients=case.auth_clients)


def _case_url(server: TlsServer, pki: Pki, case: Case, userinfo: str) -> tuple[str, TlsOptions]:
    """The URL as typed (``rediss://`` unless the case connects without TLS, to the case's
    port) and the ``--tls-*`` options."""
    if case.trust == "none":
        return server.url(userinfo, tls=False).replace(
            f":{server.plain_port}/", f":{server.tls_port}/"
        ), TlsOptions()
    url = server.url(userinfo)
    if case.port == "plain":
        url = url.replace(f":{server.tls_port}/", f":{server.plain_port}/")
    return url, TlsOptions(ca_cert=str(pki.other_ca if case.trust == "other_ca" else pki.ca))


def _no_secret(text: str) -> None:
    assert PASSWORD not in text and WRONG_PASSWORD not in text, text
    assert "Traceback" not in text, text


@pytest.mark.parametrize("name", list(CASES))
async def test_each_failure_is_named_by_the_engine_client_and_the_dashboard(
    tls_server: ServerMaker, pki: Pki, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    case = CASES[name]
    server = _case_server(tls_server, pki, case)
    url, tls = _case_url(server, pki, case, f"ops:{case.password}")
    # the engine's client, with its own retries (a shorter connect timeout, for the slow case),
    # connected first as the dashboard does, so that the failure is known to be one of connecting
    said = await _engine_client_says(tls.apply(url))
    assert case.expected in said, said
    if name == "no-client-certificate":
        assert said in CLIENT_CERT, said
    _no_secret(said)
    # the dashboard: the reason on its status bar, within the connect timeout
    app = DashboardApp(url, CorralBackend(), queues=["q"], read_only=True, tls=tls)
    started = time.monotonic()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and app.snapshot.error is not None)
        waited = time.monotonic() - started
        await pilot.pause(0.1)
        text = visible_text(app)
        assert any(line.startswith("✖ ") and case.expected in line for line in text.splitlines())
        assert "DISCONNECTED" in text and "ops:***@127.0.0.1" in text
        assert app.snapshot is not None and app.snapshot.error is not None
        _no_secret(text + notices(app) + app.snapshot.error)
    assert waited < CONNECT_TIMEOUT + SLACK, waited
    _no_secret(caplog.text)


async def _engine_client_says(url: str) -> str:
    """What ``describe_error`` says of the engine's client failing to connect to ``url`` (its
    retries included, within their connect timeouts and the probe's)."""
    client, _ = make_client(url, socket_connect_timeout=1.0, redis_connect_func=greet)
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as raised:  # noqa: PT011 - each case names its own class
            async with asyncio.timeout(4 * 1.0 + PROBE_TIMEOUT_S + SLACK + 2):
                await connect(client, url)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 4 * 1.0 + PROBE_TIMEOUT_S + SLACK
    return describe_error(raised.value, url=url)


async def test_a_tls_client_that_gets_no_tcp_answer_is_told_timeout_not_a_mixup(
    pki: Pki,
) -> None:
    """A host that does not answer at all (here a port whose accept queue is full: its SYNs go
    unanswered) is a plain timeout for a TLS client too, not "no TLS on this port": only a
    port that takes TCP connections but not the TLS hello is that."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)  # room for one connection, never accepted
        port = full.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):  # fills the queue
            url = f"rediss://ops:{PASSWORD}@127.0.0.1:{port}/0"
            tls = _verified(pki)
            said = await _engine_client_says(tls.apply(url))
            assert said == "timeout (no answer from the server)", said
            app = DashboardApp(url, CorralBackend(), queues=["q"], read_only=True, tls=tls)
            started = time.monotonic()
            async with app.run_test(size=SIZE) as pilot:
                await until(
                    pilot, lambda: app.snapshot is not None and app.snapshot.error is not None
                )
                waited = time.monotonic() - started
                await pilot.pause(0.1)
                text = visible_text(app)
                assert "✖ timeout (no answer from the server)" in text, text
                assert TLS_ON_PLAINTEXT not in text and "DISCONNECTED" in text
                _no_secret(text)
            assert waited < CONNECT_TIMEOUT + PROBE_TIMEOUT_S + SLACK, waited


@pytest.mark.parametrize("name", list(CASES))
async def test_each_failure_is_named_by_corral_dash_on_a_terminal(
    tls_server: ServerMaker, pki: Pki, name: str
) -> None:
    """``corral dash`` as typed (write mode, password from ``$CORRAL_REDIS_PASSWORD``,
    ``--tls-*`` flags): the reason on screen, ``q`` quits with status 0 as for any unreachable
    server."""
    case = CASES[name]
    server = _case_server(tls_server, pki, case)
    url, tls = _case_url(server, pki, case, "ops")
    argv = _dash_argv(url, "q", read_only=False)
    if tls.ca_cert is not None:
        argv += ["--tls-ca-cert", tls.ca_cert]
    program = await PtyProgram.start(argv, cwd=REPO_ROOT, env={ENV_PASSWORD: case.password})
    async with program:
        await program.wait_for(lambda lines: any(case.expected in line for line in lines), 60)
        _no_secret(program.text())
        program.send("q")
        assert await asyncio.wait_for(program.proc.wait(), 20) == 0
    _no_secret(program.text())


WORKER_SAYS: dict[str, tuple[str, ...]] = {
    "wrong-ca": ("certificate verify failed: self-signed certificate in certificate chain",),
    "expired": ("certificate verify failed: certificate has expired",),
    "another-host": ("certificate verify failed: IP address mismatch",),
    "plaintext-on-tls-port": ("Connection reset by peer",),
    "no-client-certificate": ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "Connection reset by peer"),
    "wrong-password": ("invalid username-password pair",),
}
"""What ``corral worker`` logs (redis-py's words). A TLS client on a plaintext port is not
here: the worker's connect attempts there each wait out the 5 s connect timeout, and it takes
longer than its shutdown grace to exit on SIGTERM (an engine gap, not checked here)."""


@pytest.mark.parametrize("name", list(WORKER_SAYS))
async def test_corral_worker_logs_each_failure_without_the_password(
    tls_server: ServerMaker, pki: Pki, name: str, tmp_path: Path
) -> None:
    """The worker keeps retrying (C5) with one warning naming the failure, no traceback, no
    password; SIGTERM ends it with status 0 within its grace period."""
    case = CASES[name]
    server = _case_server(tls_server, pki, case)
    url, tls = _case_url(server, pki, case, f"ops:{case.password}")
    log = tmp_path / "worker.log"
    extra = ["--tls-ca-cert", tls.ca_cert] if tls.ca_cert is not None else []
    worker = WorkerProcess(
        "support.jobs:noop", "q", url, extra_args=[*extra, "--shutdown-grace", "2"], log_file=log
    )
    try:
        await wait_until(lambda: _logged(log, "Redis not reachable"), within=30)
        worker.signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(30) == 0
        assert time.monotonic() - started < 2 + SLACK
    finally:
        worker.stop()
    output = worker.output()
    assert any(said in output for said in WORKER_SAYS[name]), output
    _no_secret(output)


async def _logged(log: Path, text: str) -> bool:
    return await asyncio.to_thread(lambda: log.exists() and text in log.read_text())
