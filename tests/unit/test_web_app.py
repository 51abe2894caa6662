"""tickmesh-web's start: loopback by default, and off loopback only with the admin token."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickmesh.cli import EXIT_AUTH, EXIT_USAGE
from web.app import is_loopback, main, split_listen


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.5", "example.com", "::"))
    assert split_listen("[::1]:8090") == ("::1", 8090)


def test_off_loopback_without_a_token_it_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no token file here
    for name in ("TICKMESH_ADMIN_TOKEN", "TICKMESH_CONFIG", "TICKMESH_STATE_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--listen", "0.0.0.0:8090"]) == EXIT_AUTH
    assert "needs the admin token for every read" in capsys.readouterr().err


def test_a_bad_listen_address_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "nowhere"]) == EXIT_USAGE
    assert "--listen" in capsys.readouterr().err


def test_an_unreadable_control_certificate_stops_it_at_start_with_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """control.tls_cert set (control serves TLS) but unreadable here: a clear error, not a view that never connects."""
    (tmp_path / "tickmesh.toml").write_text(f'[control]\ntls_cert = "{tmp_path / "missing.pem"}"\n')
    monkeypatch.chdir(tmp_path)
    for name in ("TICKMESH_CONFIG", "TICKMESH_STATE_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TICKMESH_ADMIN_TOKEN", "a-token")
    assert main([]) == EXIT_AUTH
    assert f"cannot read control.tls_cert {tmp_path / 'missing.pem'}" in capsys.readouterr().err
