"""Where the dashboard's password comes from (never argv): a file of mode 600, the environment,
or a prompt; each checked by connecting to a real server whose ACL user needs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from support.server import FaultServer

from corral.cli import main
from dashboard.app import DashboardApp
from dashboard.credentials import ENV_PASSWORD, CredentialError, resolve_url

PASSWORD = "pw-from-file-5521"


@pytest.fixture
def ops_url(fresh_server: FaultServer) -> str:
    """The server's URL naming the user ``ops``, without its password."""
    client = fresh_server.client()
    try:
        client.acl_setuser(
            "ops", enabled=True, passwords=[f"+{PASSWORD}"], keys=["~*"], commands=["+@all"]
        )
    finally:
        client.close()
    return fresh_server.url.replace("redis://", "redis://ops@", 1)


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _secret_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "redis-password"
    path.write_text(PASSWORD + "\n")
    os.chmod(path, mode)
    return path


def test_password_file_env_and_prompt_each_connect(ops_url: str, tmp_path: Path) -> None:
    assert _pings(resolve_url(ops_url, _secret_file(tmp_path, 0o600), environ={}))
    assert _pings(resolve_url(ops_url, environ={ENV_PASSWORD: PASSWORD}))
    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return PASSWORD

    assert _pings(resolve_url(ops_url, environ={}, prompt=prompt))
    assert asked == [f"Password for ops@{ops_url.rpartition('@')[2].split('/')[0]}: "]
    assert resolve_url(ops_url, environ={}, prompt=None) == ops_url  # no terminal: no prompt
    plain = ops_url.replace("ops@", "")
    assert resolve_url(plain, environ={}, prompt=prompt) == plain  # no user named: no prompt
    assert len(asked) == 1


def test_a_password_file_others_can_read_is_refused(ops_url: str, tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="mode 0644 lets others read it"):
        resolve_url(ops_url, _secret_file(tmp_path, 0o644), environ={})
    with pytest.raises(CredentialError, match="No such file"):
        resolve_url(ops_url, tmp_path / "missing", environ={})
    with_pw = ops_url.replace("ops@", f"ops:{PASSWORD}@")
    with pytest.raises(CredentialError, match="use one"):
        resolve_url(with_pw, _secret_file(tmp_path, 0o600), environ={})


def test_corral_dash_password_file(
    ops_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started: list[DashboardApp] = []
    monkeypatch.setattr(DashboardApp, "run", lambda app, *a, **k: started.append(app))
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    secret = _secret_file(tmp_path, 0o600)
    assert main(["dash", "--redis", ops_url, "--password-file", str(secret)]) == 0
    (app,) = started
    assert _pings(app.url)
    assert PASSWORD not in app.masked_url and "ops:***@" in app.masked_url
    os.chmod(secret, 0o640)
    assert main(["dash", "--redis", ops_url, "--password-file", str(secret)]) == 2
    err = capsys.readouterr().err
    assert "chmod 600" in err and PASSWORD not in err
