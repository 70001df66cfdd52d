"""Z3's TLS options without a server: ``--tls-ca-cert``/``--tls-cert``/``--tls-key``/
``--tls-insecure`` map to redis-py's ``ssl_*`` options, a bad combination names the flag, and
``corral dash``/``corral worker`` take them. The cases against a server's own TLS are in
``test_tls_server.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis
from support.tls_server import (
    BINARY_ENV,
    REQUIRE_ENV,
    TlsServerUnavailable,
    server_binary,
    unavailable,
)

from corral.cli import build_parser, main
from dashboard.app import DashboardApp
from dashboard.conn_errors import describe_error
from engine.connection import TlsOptions

pytestmark = pytest.mark.timeout(60)

PASSWORD = "tls-pw-5521"


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


# -- wording ------------------------------------------------------------------------------


def test_tls_handshake_messages() -> None:
    """A handshake failure no real server produced in the tests (a plaintext Redis never
    answers a TLS hello: ``test_tls_server.py``), from redis-py's wording: a plaintext reply
    to the hello."""
    plain = (
        "Error 1 connecting to h:1. [SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)."
    )
    assert describe_error(ConnectionError(plain)) == (
        "TLS handshake failed: no TLS on this port (try redis://)"
    )


# -- where the tests get a TLS server --------------------------------------------------------


def test_a_given_binary_that_is_missing_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$CORRAL_TLS_SERVER_BIN`` naming no file: the reason names the variable; a skip, or a
    failure under ``CORRAL_REQUIRE_TLS_SERVER=1``."""
    missing = tmp_path / "redis-server"
    with pytest.raises(TlsServerUnavailable, match=f"{BINARY_ENV}=.*: no such file"):
        server_binary({BINARY_ENV: str(missing)})
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no server"):
        unavailable("no server")
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"no server \\({REQUIRE_ENV}=1"):
        unavailable("no server")
