"""Z3's TLS cases: ``--tls-ca-cert``/``--tls-cert``/``--tls-key``/``--tls-insecure`` map to
redis-py's ``ssl_*`` options; the dashboard and ``corral worker`` connect through a TLS front
with the right CA; a wrong CA, an expired certificate, a certificate for another host and a
plaintext client each fail with a specific one-line reason, and the password shows nowhere."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pilot import SIZE, notices, until, visible_text
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from support.server import FaultServer
from support.workers import WorkerProcess, wait_until
from tls_proxy import Pki, TlsProxy, make_pki

from corral.cli import build_parser, main
from dashboard.app import DashboardApp
from dashboard.conn_errors import describe_error
from dashboard.corral_backend import CorralBackend
from engine.connection import TlsOptions
from engine.queue import Queue

pytestmark = pytest.mark.timeout(60)

PASSWORD = "tls-pw-5521"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A private CA, server certificates signed by it, and a CA that signed none of them."""
    return make_pki(tmp_path)


@pytest.fixture
def tls_front(fresh_server: FaultServer, pki: Pki) -> Iterator[TlsProxy]:
    """The test's server behind TLS (a valid certificate for 127.0.0.1), with an ACL user
    ``ops`` whose password is ``PASSWORD``."""
    admin = fresh_server.client()
    try:
        admin.acl_setuser(
            "ops", enabled=True, passwords=[f"+{PASSWORD}"], keys=["~*"], channels=["&*"],
            commands=["+@all"],
        )  # fmt: skip
    finally:
        admin.close()
    with TlsProxy(fresh_server.port, pki.server_cert, pki.server_key) as proxy:
        yield proxy


# -- the option mapping -----------------------------------------------------------------------


def test_options_map_to_redis_py_ssl_arguments(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "me.pem", "me.key"))
    for path in (ca, cert, key):
        path.write_text("x")
    assert TlsOptions(ca_cert=str(ca), cert=str(cert), key=str(key)).client_kwargs() == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    assert TlsOptions().client_kwargs() == {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    assert TlsOptions(insecure=True).client_kwargs() == {"ssl_cert_reqs": "none"}
    url = TlsOptions(ca_cert=str(ca)).apply("rediss://ops:pw@db.example:6380/2?health_check=1")
    client = aioredis.Redis.from_url(url)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["ssl_check_hostname"], kwargs["db"]) == (
        str(ca),
        True,
        2,
    )
    assert kwargs["password"] == "pw"
    assert TlsOptions().apply("redis://h:1/0") == "redis://h:1/0"  # nothing given: unchanged


@pytest.mark.parametrize(
    ("options", "url", "error"),
    [
        ({"ca_cert": "{ca}"}, "redis://127.0.0.1:6379/0", "need a rediss:// URL"),
        ({"ca_cert": "{missing}"}, "rediss://127.0.0.1:6379/0", "--tls-ca-cert .*: no such file"),
        ({"cert": "{ca}", "key": "{missing}"}, "rediss://h:1/0", "--tls-key .*: no such file"),
        ({"key": "{ca}"}, "rediss://h:1/0", "--tls-key needs --tls-cert"),
        ({"ca_cert": "{ca}", "insecure": True}, "rediss://h:1/0", "contradict"),
        ({"ca_cert": "{ca}"}, "rediss://h:1/0?ssl_ca_certs=/x", "the URL sets ssl_ca_certs"),
    ],
)
def test_bad_options_name_the_flag(
    tmp_path: Path, options: dict[str, object], url: str, error: str
) -> None:
    (tmp_path / "ca.pem").write_text("x")
    paths = {"ca": str(tmp_path / "ca.pem"), "missing": str(tmp_path / "nope.pem")}
    given = {k: v.format(**paths) if isinstance(v, str) else v for k, v in options.items()}
    with pytest.raises(ValueError, match=error):
        TlsOptions(**given).apply(url)  # type: ignore[arg-type]


def test_dash_and_worker_take_the_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flags reach the dashboard's connections; the title shows the URL as typed, masked;
    a bad combination exits 2 before anything starts."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    url = f"rediss://ops:{PASSWORD}@127.0.0.1:1/0"
    assert main(["dash", "--redis", url, "--tls-ca-cert", str(ca), "--read-only"]) == 0
    assert main(["dash", "--redis", url, "--tls-insecure", "--read-only"]) == 0
    verified, insecure = started
    assert f"ssl_ca_certs={str(ca).replace('/', '%2F')}" in verified.monitor.url
    assert verified.title == "Corral rediss://ops:***@127.0.0.1:1/0"
    assert "TLS NOT VERIFIED" in insecure.title and "ssl_cert_reqs=none" in insecure.monitor.url
    assert main(["dash", "--redis", "redis://127.0.0.1:1/0", "--tls-ca-cert", str(ca)]) == 2
    assert "need a rediss:// URL" in capsys.readouterr().err
    worker = build_parser().parse_args(
        ["worker", "m:f", "--queue", "q", "--tls-cert", "c.pem", "--tls-key", "k.pem"]
    )
    assert (worker.tls_cert, worker.tls_key, worker.tls_ca_cert) == ("c.pem", "k.pem", None)
    with pytest.raises(SystemExit):
        main(["dash", "--help"])
    help_text = capsys.readouterr().out
    assert "DANGEROUS" in help_text and "--tls-ca-cert" in help_text


# -- against a server behind TLS --------------------------------------------------------------


async def test_dashboard_connects_with_the_right_ca_and_names_a_wrong_one(
    tls_front: TlsProxy, pki: Pki, fresh_server: FaultServer, queue_name: str
) -> None:
    async with Queue(queue_name, fresh_server.url) as queue:
        await queue.add("send", {"n": 1})
    url = tls_front.url(f"ops:{PASSWORD}")
    app = DashboardApp(
        url,
        CorralBackend(),
        queues=[queue_name],
        read_only=True,
        poll_interval=0.2,
        tls=TlsOptions(ca_cert=str(pki.ca)),
    )
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None and bool(app.snapshot.queues))
        await pilot.pause(0.1)
        text = visible_text(app)
        assert app.snapshot is not None and app.snapshot.error is None
        assert "rediss://ops:***@127.0.0.1" in text and PASSWORD not in text
    wrong = DashboardApp(
        url,
        CorralBackend(),
        queues=[queue_name],
        read_only=True,
        tls=TlsOptions(ca_cert=str(pki.other_ca)),
    )
    async with wrong.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: wrong.snapshot is not None and wrong.snapshot.error is not None)
        await pilot.pause(0.1)
        text = visible_text(wrong)
        assert "TLS certificate verify failed: unknown CA" in text, text
        assert "Traceback" not in text
        assert wrong.snapshot is not None and wrong.snapshot.error is not None
        assert PASSWORD not in text + notices(wrong) + wrong.snapshot.error


@pytest.mark.parametrize(
    ("certificate", "client", "expected"),
    [
        ("server", "other_ca", "TLS certificate verify failed: unknown CA"),
        ("expired", "ca", "TLS certificate verify failed: the server's certificate has expired"),
        ("elsewhere", "ca", "TLS certificate verify failed: the certificate is not for this host"),
        ("server", "plaintext", "connection closed by the server"),
    ],
)
async def test_each_certificate_problem_has_its_own_message(
    fresh_server: FaultServer, pki: Pki, certificate: str, client: str, expected: str
) -> None:
    cert = {"server": pki.server_cert, "expired": pki.expired_cert}.get(
        certificate, pki.elsewhere_cert
    )
    with TlsProxy(fresh_server.port, cert, pki.server_key) as proxy:
        url = proxy.url(f"ops:{PASSWORD}")
        if client == "plaintext":
            url = url.replace("rediss://", "redis://")
        else:
            ca = pki.ca if client == "ca" else pki.other_ca
            url = TlsOptions(ca_cert=str(ca)).apply(url)
        said = await _connect_error(url)
    assert said.startswith(expected), said
    assert PASSWORD not in said


async def test_a_monitor_using_tls_on_a_plaintext_port_never_hangs(
    fresh_server: FaultServer, pki: Pki
) -> None:
    url = TlsOptions(ca_cert=str(pki.ca)).apply(fresh_server.url.replace("redis://", "rediss://"))
    async with asyncio.timeout(10):
        said = await _connect_error(url, wait_s=1.0)
    assert said == "timeout (no answer from the server)"


async def test_mutual_tls_needs_the_client_certificate(fresh_server: FaultServer, pki: Pki) -> None:
    """``--tls-cert``/``--tls-key`` reach the handshake: with them a server that asks for a
    client certificate lets the client in; without, it is refused (never a hang)."""
    proxy = TlsProxy(fresh_server.port, pki.server_cert, pki.server_key, client_ca=pki.ca)
    with proxy:
        url = proxy.url()
        mutual = TlsOptions(ca_cert=str(pki.ca), cert=str(pki.client_cert), key=str(pki.server_key))
        client = aioredis.Redis.from_url(mutual.apply(url), socket_connect_timeout=3)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
        said = await _connect_error(TlsOptions(ca_cert=str(pki.ca)).apply(url))
    # TLS 1.3: the client's handshake ends before the server checks its certificate, so the
    # refusal arrives as an alert or as the server closing the connection
    assert said.startswith("TLS handshake refused by the server") or said == (
        "connection closed by the server"
    ), said


def test_tls_handshake_messages() -> None:
    """The handshake failures not produced live above, from redis-py's wording."""
    plain = (
        "Error 1 connecting to h:1. [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)."
    )
    assert describe_error(ConnectionError(plain)) == (
        "TLS handshake failed: no TLS on this port (try redis://)"
    )


async def test_corral_worker_runs_jobs_over_tls(
    tls_front: TlsProxy, pki: Pki, fresh_server: FaultServer, queue_name: str
) -> None:
    url = TlsOptions(ca_cert=str(pki.ca)).apply(tls_front.url(f"ops:{PASSWORD}"))
    async with Queue(queue_name, url) as queue:  # the engine's own clients take the URL too
        await queue.add("j", {"n": 1})
        worker = WorkerProcess(
            "support.jobs:noop",
            queue_name,
            tls_front.url(f"ops:{PASSWORD}"),
            extra_args=["--tls-ca-cert", str(pki.ca)],
        )
        try:
            await wait_until(lambda: _completed(queue), within=20)
            worker.signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            worker.stop()


async def _completed(queue: Queue) -> bool:
    return (await queue.get_totals())[0] >= 1


async def _connect_error(url: str, wait_s: float = 3.0) -> str:
    """What the dashboard would say about connecting to ``url``."""
    client = aioredis.Redis.from_url(
        url, socket_connect_timeout=wait_s, socket_timeout=wait_s, retry=Retry(NoBackoff(), 0)
    )
    try:
        await client.ping()
    except Exception as exc:
        return describe_error(exc)
    finally:
        await client.aclose()
    raise AssertionError(f"connected to {url}")
