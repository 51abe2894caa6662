"""tickmesh.health: what /livez and /readyz answer for a loop's published values, over real HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tickmesh.health import Health, split_address, start_probes, stop_probes
from tickmesh.probes import ProbeServer
from tickmesh.runtime import mesh_parser
from tickmesh.sockets import EndpointError


def get(server: ProbeServer, path: str) -> tuple[int, str]:
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def probes() -> Iterator[tuple[Health, ProbeServer]]:
    health = Health(stale_s=60)
    server = start_probes("127.0.0.1:0", health)
    yield health, server
    stop_probes(server)


def test_live_at_once_ready_only_when_the_loop_says_so(probes: tuple[Health, ProbeServer]) -> None:
    health, server = probes
    assert get(server, "/livez") == (200, "ok\n")
    assert get(server, "/readyz") == (503, "starting\n")
    health.ready()
    assert get(server, "/readyz") == (200, "ok\n")
    health.ready("no live worker on tick.0")
    assert get(server, "/readyz") == (503, "no live worker on tick.0\n")
    assert get(server, "/other")[0] == 404


def test_a_loop_that_stopped_turning_is_neither_live_nor_ready(probes: tuple[Health, ProbeServer]) -> None:
    health, server = probes
    health.ready()
    health.turned -= 61  # the loop's last stamp, a minute ago
    code, text = get(server, "/livez")
    assert code == 503 and "has not turned for 61" in text
    assert get(server, "/readyz")[0] == 503
    health.turn()
    assert get(server, "/livez")[0] == get(server, "/readyz")[0] == 200


def test_addresses() -> None:
    assert split_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert split_address(":8080") == ("127.0.0.1", 8080)
    assert split_address("[::1]:8080") == ("::1", 8080)
    with pytest.raises(EndpointError, match="not HOST:PORT"):
        split_address("8080x")


def test_a_port_in_use_is_a_clear_endpoint_error(probes: tuple[Health, ProbeServer]) -> None:
    _, server = probes
    with pytest.raises(EndpointError, match="cannot bind health endpoint"):
        start_probes(f"127.0.0.1:{server.server_address[1]}", Health())


def test_the_flag_and_the_environment_are_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TICKMESH_HEALTH", raising=False)
    assert mesh_parser("p", "d").parse_args([]).health is None  # off by default
    assert mesh_parser("p", "d").parse_args(["--health", ":8080"]).health == ":8080"
    monkeypatch.setenv("TICKMESH_HEALTH", "0.0.0.0:8080")
    assert mesh_parser("p", "d").parse_args([]).health == "0.0.0.0:8080"
    monkeypatch.setenv("TICKMESH_HEALTH", "8080")
    with pytest.raises(SystemExit) as exit_:
        mesh_parser("p", "d").parse_args([])
    assert exit_.value.code == 2
