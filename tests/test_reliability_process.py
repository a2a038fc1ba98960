"""`sae serve` killed with SIGKILL leaves no tritonserver and no python-backend stub behind, and frees its ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, pid_alive

from sae.repository.configs import ServingSettings
from sae.serving.triton.process_group import _free_ports, _group_members

pytestmark = pytest.mark.server

GONE_WITHIN_S = 10.0


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(condition, timeout_s: float) -> float:
    """Seconds until ``condition()`` held; AssertionError after ``timeout_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - start


def start_sae_serve(repository: Path) -> tuple[list[int], subprocess.Popen]:
    """`sae serve` of ``repository`` on three free ports, in a session of its own, its output piped."""
    ports = _free_ports("127.0.0.1", 3)
    command = [
        sys.executable,
        "-m",
        "sae",
        "serve",
        "--repo",
        str(repository),
        "--grpc-port",
        str(ports[0]),
        "--http-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
    ]
    serve = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    return ports, serve


def read_until(serve: subprocess.Popen, text: str, lines: list[str]) -> list[str]:
    """``serve``'s output lines appended to ``lines`` up to the first holding ``text`` (or to its end)."""
    for line in serve.stdout:
        lines.append(line)
        if text in line:
            break
    return lines


def test_sigkill_of_sae_serve_leaves_no_server_and_frees_the_ports(exported_repo, tmp_path):
    ports, serve = start_sae_serve(exported_repo)
    try:
        lines = read_until(serve, "Triton is ready", [])  # until "Triton is ready (pid N, ...)"
        ready = re.search(r"Triton is ready \(pid (\d+)", "".join(lines))
        assert ready, "".join(lines)
        server_pid = int(ready.group(1))
        group = _group_members(server_pid)  # tritonserver is its session leader: the stubs share its group
        assert server_pid in group and len(group) >= 7, group
        # the HTTP and metrics listeners may come up a moment after the gRPC readiness check
        wait_for(lambda: not any(port_is_free(p) for p in ports), 10)
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(timeout=5)
        took = wait_for(lambda: not any(pid_alive(p) for p in group), GONE_WITHIN_S)
        wait_for(lambda: all(port_is_free(p) for p in ports), GONE_WITHIN_S - took)
        print(f"tritonserver and {len(group) - 1} stubs gone {took:.2f} s after SIGKILL of sae serve")
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
        for pid in _group_members(server_pid) if "server_pid" in locals() else []:
            os.kill(pid, signal.SIGKILL)  # only if the test failed: leave nothing running


def stubs_of(server_pid: int, model: str) -> list[int]:
    found = []
    for pid in _group_members(server_pid):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if f"/{model}/1/model.py".encode() in cmdline:
            found.append(pid)
    return found


@pytest.mark.slow
def test_a_killed_stub_makes_sae_serve_restart_the_server_and_good_requests_succeed_again(exported_repo):
    """Triton 2.51 does not restart a python-backend stub killed with SIGKILL: every second decode request (the
    dead instance's turn) fails with INTERNAL "Stub process 'decode_0_0' is not healthy" while the model reports
    READY. `sae serve` watches its stubs and restarts the server on the same ports; the client's retries of
    UNAVAILABLE, with an outer wait, make good requests succeed again within RECOVERY_S."""
    import numpy as np

    from sae.clients.triton_client import SAEClient

    recovery_s = 60.0
    ports, serve = start_sae_serve(exported_repo)
    try:
        lines = read_until(serve, "Triton is ready", [])
        first_pid = int(re.search(r"Triton is ready \(pid (\d+)", "".join(lines)).group(1))
        latents = np.zeros((2, 12), np.float32)
        with SAEClient(f"127.0.0.1:{ports[0]}", timeout_s=10) as client:
            expected = client.decode(latents)
            victim = stubs_of(first_pid, "decode")[0]
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            read_until(serve, "Triton is ready again", lines)  # sae serve notices and restarts
            restarted = re.search(r"ready again \(pid (\d+)\) after ([\d.]+) s", "".join(lines))
            assert restarted, "".join(lines)
            assert f"python-backend stub {victim} died; restarting tritonserver" in "".join(lines)
            new_pid = int(restarted.group(1))
            decode_instances = ServingSettings().decode.instances
            assert new_pid != first_pid and not pid_alive(first_pid)
            assert len(stubs_of(new_pid, "decode")) == decode_instances
            while True:  # the client's channel may need a moment to reconnect
                try:
                    images = [client.decode(latents) for _ in range(4)]  # both instances, twice
                    break
                except Exception:
                    assert time.monotonic() - killed < recovery_s
                    time.sleep(0.2)
            recovered = time.monotonic() - killed
        assert all(np.allclose(image, expected, atol=1e-5) for image in images)
        print(
            f"stub killed -> restart done in {float(restarted.group(2)):.1f} s; good requests again after "
            f"{recovered:.1f} s"
        )
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
