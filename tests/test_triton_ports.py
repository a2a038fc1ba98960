"""Ports picked free (bind port 0, close) can be taken by another process before tritonserver binds them: the start
picks fresh ones and launches again (up to START_TRIES launches); a port the config names, or one taken at every
launch, fails the start with an error naming the port. Triton logs an HTTP or metrics port it cannot bind and serves
on over gRPC, so a start is only done once the server listens on all three."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from conftest import copy_repository, pids_mentioning

from sae.serving.triton import ServerConfig, TritonServer
from sae.serving.triton import server as server_module
from sae.serving.triton.process_group import _free_ports, _listening_ports

pytestmark = pytest.mark.server
SERVICES = ("grpc", "http", "metrics")


class PortThief:
    """Stands in for the server's port picker: takes (binds and listens on) the ``service``'s pick of the first
    ``launches`` picks, as another process could between the pick and tritonserver's bind."""

    def __init__(self, service: str, launches: int):
        self.index, self.launches = SERVICES.index(service), launches
        self.picks: list[list[int]] = []
        self.held: list[socket.socket] = []

    def __call__(self, host: str, count: int) -> list[int]:
        ports = _free_ports(host, count)
        if len(self.picks) < self.launches:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, ports[self.index]))
            sock.listen()
            self.held.append(sock)
        self.picks.append(ports)
        return ports

    def close(self) -> None:
        for sock in self.held:
            sock.close()


@pytest.fixture
def thief(monkeypatch):
    made = []

    def make(service: str, launches: int) -> PortThief:
        made.append(PortThief(service, launches))
        monkeypatch.setattr(server_module, "_free_ports", made[-1])
        return made[-1]

    yield make
    for stolen in made:
        stolen.close()


@pytest.mark.parametrize("service", SERVICES)
def test_a_picked_port_taken_before_the_server_binds_it_is_picked_again(tmp_path, thief, service):
    repository = copy_repository(tmp_path / "models")
    stolen = thief(service, launches=1)
    with TritonServer(ServerConfig(repository=repository), log_path=tmp_path / "server.log") as server:
        ports = [
            int(url.rsplit(":", 1)[1].split("/")[0]) for url in (server.grpc_url, server.http_url, server.metrics_url)
        ]
        assert len(stolen.picks) == 2 and ports == stolen.picks[1], "a second launch, on the fresh picks"
        assert stolen.picks[0][stolen.index] not in ports
        assert set(ports) <= _listening_ports(server.pid), "the server itself listens on all three"
        with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=10) as answer:
            assert answer.status == 200
    assert pids_mentioning(str(repository)) == []


def test_a_port_the_config_names_fails_the_start_with_its_number(tmp_path, thief):
    repository = copy_repository(tmp_path / "models")
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    stolen = thief("grpc", launches=0)  # takes nothing: counts the launches
    try:
        with pytest.raises(server_module.PortInUse) as failure:
            TritonServer(ServerConfig(repository=repository, http_port=port)).start()
    finally:
        held.close()
    assert str(failure.value).startswith(
        f"port {port} (HTTP) on 127.0.0.1 is already in use by another process; choose another port"
    ), str(failure.value)
    assert failure.value.ports == (port,) and len(stolen.picks) == 1, "no second launch for a port it was given"
    assert pids_mentioning(str(repository)) == []


def test_a_picked_port_taken_at_every_launch_fails_after_the_last_try(tmp_path, thief):
    repository = copy_repository(tmp_path / "models")
    stolen = thief("grpc", launches=server_module.START_TRIES)
    with pytest.raises(server_module.PortInUse) as failure:
        TritonServer(ServerConfig(repository=repository), log_path=tmp_path / "server.log").start()
    last = stolen.picks[-1][0]
    assert len(stolen.picks) == server_module.START_TRIES
    assert str(failure.value).startswith(
        f"port {last} (gRPC) on 127.0.0.1 is already in use by another process "
        f"(ports picked afresh for each of {server_module.START_TRIES} launches)"
    )
    assert pids_mentioning(str(repository)) == []
