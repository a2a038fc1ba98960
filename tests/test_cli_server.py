"""`sae sample --model`, `sae models` and "model not served" against a real server holding one named set."""

from __future__ import annotations

import time

import pytest

from sae.cli import main
from tests.conftest import copy_repository, module_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def named_export(tmp_path_factory, trained_run):
    from sae.export.model_set import export_run

    repo = copy_repository(tmp_path_factory.mktemp("named") / "model_repository")
    report = export_run(trained_run, repo, name="tiny")
    return repo, report


@pytest.fixture(scope="module")
def named_server(named_export, tmp_path_factory):
    with module_server(named_export[0], tmp_path_factory, "named_triton") as server:
        yield server


def test_sample_with_model_writes_that_sets_samples(named_server, tmp_path, capsys):
    out = tmp_path / "samples.png"
    assert main(["sample", "--model", "tiny", "--n", "4", "--url", named_server.grpc_url, "--out", str(out)]) == 0
    assert f"wrote 4 hybrid samples to {out}" in capsys.readouterr().out
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert width >= 2 * 64 and height >= 2 * 64  # a 2 x 2 grid of 64 x 64 samples


def test_sample_of_a_set_that_is_not_served_fails_at_once(named_server, capsys):
    start = time.monotonic()
    assert main(["sample", "--model", "nope", "--url", named_server.grpc_url]) == 2
    assert time.monotonic() - start < 10
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(
        f"sae sample: error: nope_hybrid_sample is not served at {named_server.grpc_url} "
        "(model sets there: 'tiny'): pass the set's name (--model NAME"
    )


def test_models_lists_the_set_its_state_versions_draw_modes_and_limits(named_server, capsys):
    assert main(["models", "--url", named_server.grpc_url]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == (
        "tiny: ready, version 1; draw independent/distinct/per_dimension; up to 256 samples and 256 images per request"
    )
    listed = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(listed) == {
        f"tiny_{role}" for role in ("encode", "decode", "sampler", "traverse", "reconstruct", "hybrid_sample")
    }
    assert all(fields[:3] == ["READY", "version", "1"] for fields in listed.values())


def test_parity_line_is_one_readable_line(named_export):
    from sae.cli.export import parity_line

    line = parity_line(named_export[1])
    assert "\n" not in line and line.startswith("max |eager - runtime|: encode/onnx ")
    assert "decode/onnx" in line and "{" not in line


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_serve_keeps_its_log_and_passes_arguments_after_the_double_dash(named_export, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT

    grpc, http, metrics = _free_ports(3)
    log = tmp_path / "logs" / "triton.log"
    log.parent.mkdir()
    command = [
        sys.executable,
        "-m",
        "sae",
        "serve",
        "--repo",
        str(named_export[0]),
        "--grpc-port",
        str(grpc),
        "--http-port",
        str(http),
        "--metrics-port",
        str(metrics),
        "--log",
        str(log),
        "--",
        "--model-control-mode=poll",
        "--repository-poll-secs=30",
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C") or len(lines) > 50:
                break
        assert any(f"log      {log}" in line for line in lines), lines
        assert main(["models", "--url", f"127.0.0.1:{grpc}"]) == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    text = log.read_text()  # still there after the stop
    import re

    # Triton's option table: the later --model-control-mode won over the package's "none"
    assert re.search(r"model_control_mode\s*\|\s*MODE_POLL", text), text[:3000]
