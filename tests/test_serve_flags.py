"""tritonserver's memory-pool flags for CPU-only and GPU machines (serving/triton/config.py), built without a GPU."""

import pytest

from sae.cli import build_parser
from sae.serving.triton import config as triton


def test_cpu_only_flags_disable_every_pool():
    flags = triton.memory_pool_flags(0)
    assert "--pinned-memory-pool-byte-size=0" in flags
    assert "--cuda-memory-pool-byte-size=0:0" in flags
    assert "--allow-gpu-metrics=false" in flags


def test_gpu_flags_give_a_pinned_pool_and_one_cuda_pool_per_gpu():
    flags = triton.memory_pool_flags(2)
    assert f"--pinned-memory-pool-byte-size={256 << 20}" in flags
    cuda = [f for f in flags if f.startswith("--cuda-memory-pool-byte-size=")]
    assert cuda == [f"--cuda-memory-pool-byte-size=0:{64 << 20}", f"--cuda-memory-pool-byte-size=1:{64 << 20}"]
    assert not any(f.endswith("=0") or f.endswith("=0:0") for f in flags)


def test_negative_gpu_count_is_refused():
    with pytest.raises(ValueError, match="gpus"):
        triton.memory_pool_flags(-1)


@pytest.mark.parametrize(
    "gpu, found, expected", [(None, 0, 0), (None, 3, 3), (False, 3, 0), (True, 0, 1), (True, 2, 2)]
)
def test_override_decides_over_detection(monkeypatch, gpu, found, expected):
    monkeypatch.setattr(triton, "visible_gpu_count", lambda: found)
    assert triton.gpu_count(gpu) == expected


def test_cuda_visible_devices_narrows_the_count(monkeypatch):
    monkeypatch.setattr(
        triton.subprocess,
        "run",
        lambda *a, **k: type("R", (), {"returncode": 0, "stdout": "GPU 0: H200 (UUID: a)\nGPU 1: H200 (UUID: b)\n"})(),
    )
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert triton.visible_gpu_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert triton.visible_gpu_count() == 0


@pytest.mark.parametrize("argv, gpu", [([], None), (["--gpu"], True), (["--cpu-only"], False)])
def test_serve_parser_passes_the_override(argv, gpu):
    assert build_parser().parse_args(["serve", *argv]).gpu is gpu


def test_gpu_and_cpu_only_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--gpu", "--cpu-only"])
    assert "not allowed with" in capsys.readouterr().err


def test_serve_poll_puts_triton_in_poll_mode_before_the_users_own_arguments():
    from sae.cli import build_parser
    from sae.cli.serve import server_config

    args = build_parser().parse_args(["serve", "--poll", "5", "--", "--log-verbose=1"])
    assert server_config(args).extra_args == (
        "--model-control-mode=poll",
        "--repository-poll-secs=5",
        "--log-verbose=1",
    )
    assert server_config(build_parser().parse_args(["serve"])).extra_args == ()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--poll", "0"])
