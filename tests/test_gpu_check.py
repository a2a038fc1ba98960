"""``python -m benchmarks.gpu_check``: its --cpu-tiny mode end to end (the CI stand-in for the GPU run), and its
pieces."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.server
def test_cpu_tiny_writes_numbers_for_every_measured_cell_and_skips_cuda_modes(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--cpu-tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["schema"] == "sae-gpu-check/1" and report["mode"] == "cpu-tiny"
    info = report["device_info"]
    assert info["device"] == "cpu" and info["gpu"] is None and info["gpu_driver"] is None and info["torch"] is None

    eager, compiled = report["train"]
    assert eager["compile"] is False and _is_number(eager["images_per_second"]) and eager["images_per_second"] > 0
    assert eager["batch_size"] == 8 and eager["timed_steps"] == 2
    assert "CUDA only" in compiled["skipped"]

    cells = report["in_process"]
    measured = [c for c in cells if c["mode"] == "eager"]
    assert {(c["path"], c["batch_size"]) for c in measured} == {
        (p, b) for p in ("decode", "hybrid_sample") for b in (1, 4)
    }
    for cell in measured:
        assert "error" not in cell, cell
        assert all(_is_number(cell[k]) and cell[k] > 0 for k in ("p50_ms", "p90_ms", "items_per_s")), cell
    skipped = [c for c in cells if c["mode"] in ("compiled", "cuda_graph")]
    assert len(skipped) == 8 and all("CUDA only" in c["skipped"] for c in skipped)

    served = report["served"]
    assert "error" not in served and "skipped" not in served, served
    assert {(c["path"], c["batch_size"], c["concurrency"]) for c in served["cells"]} == {
        (p, b, c) for p in ("decode", "hybrid_sample") for b in (1, 4) for c in (1, 2)
    }
    for cell in served["cells"]:
        assert cell["errors"] == 0 and _is_number(cell["p50_ms"]) and _is_number(cell["items_per_s"]), cell

    targets = {t["target"]: t for t in report["targets"]}
    assert targets["train_images_per_s"]["value"] == eager["images_per_second"]
    assert targets["train_images_per_s"]["met"] is False  # a tiny CPU run is far from 10,000 img/s
    assert targets["served_hybrid_b256_samples_per_s"]["met"] is None  # batch 256 is not in the tiny grid
    assert _is_number(targets["hybrid_b1_p50_ms"]["value"])
    table = out.with_suffix(".md").read_text()
    assert "| training throughput (img/s)" in table and "| train | eager | sae12-tiny | 8 |" in table
    assert "not met" in table and "n/a (not measured)" in table


def test_the_torch_runtime_decodes_like_the_eager_model_and_refuses_what_the_onnx_template_refuses(tmp_path):
    import torch

    from benchmarks.gpu_check.check import synthetic_bank, untrained_model
    from sae.export.graphs import DecodeGraph, graph_specs
    from sae.export.torchscript import export_torchscript
    from sae.repository.templates import ONNX_MODEL
    from sae.repository.templates.torch_model import TorchRunner, load_request_checks, parse_batch_sizes

    model = untrained_model("sae12-tiny", "cpu")
    export_torchscript(graph_specs(model)["decode"], tmp_path / "model.pt")
    runner = TorchRunner(
        torch.jit.load(str(tmp_path / "model.pt")).eval(), "cpu", "bf16", (1, 4), np.zeros(12, np.float32)
    )
    assert runner.autocast_dtype is None and runner.graphs == {}  # autocast and CUDA graphs are CUDA-only
    bank = synthetic_bank(model, size=5)
    out = runner.run(bank.latents)
    with torch.no_grad():
        eager = DecodeGraph(model)(torch.from_numpy(bank.latents)).numpy()
    assert out.shape == (5, 64, 64, 3) and np.allclose(out, eager, atol=1e-5)

    with pytest.raises(FileNotFoundError, match="onnx_model.py is missing"):
        load_request_checks(str(tmp_path))
    (tmp_path / "onnx_model.py").write_text(ONNX_MODEL.read_text())
    checks = load_request_checks(str(tmp_path))
    with pytest.raises(checks.common.BadRequest, match="LATENT must hold finite values; 1 of 2 rows"):
        checks.check_input("LATENT", np.array([[0.0] * 12, [np.nan] * 12], np.float32), [12])
    assert parse_batch_sizes("64, 1,64") == [1, 64] and parse_batch_sizes("") == []
    with pytest.raises(ValueError, match="cuda_graph_batch_sizes"):
        parse_batch_sizes("1,x")
    with pytest.raises(ValueError, match="parameter precision"):
        TorchRunner(runner.module, "cpu", "int8")


def test_targets_are_judged_from_the_report_and_missing_values_are_not_met_or_failed():
    from benchmarks.gpu_check.check import judge_targets

    report = {
        "train": [{"compile": False, "images_per_second": 12_000.0}, {"compile": True, "skipped": "x"}],
        "served": {
            "cells": [
                {"path": "hybrid_sample", "batch_size": 1, "concurrency": 1, "p50_ms": 2.5, "items_per_s": 400.0},
                {"path": "hybrid_sample", "batch_size": 1, "concurrency": 8, "p50_ms": 1.0, "items_per_s": 900.0},
                {"path": "decode", "batch_size": 256, "concurrency": 8, "p50_ms": 9.0, "items_per_s": 60_000.0},
            ]
        },
    }
    targets = {t["target"]: t for t in judge_targets(report)}
    assert targets["train_images_per_s"]["met"] is True
    assert targets["hybrid_b1_p50_ms"]["value"] == 2.5 and targets["hybrid_b1_p50_ms"]["met"] is False  # conc 1
    assert targets["served_hybrid_b256_samples_per_s"]["value"] is None  # a decode cell does not count
    assert targets["served_hybrid_b256_samples_per_s"]["met"] is None
