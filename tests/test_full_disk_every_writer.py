"""Every kind of file the package writes (the model card and the JSON files share ``write_text_atomic`` with the
bench report), written with the file-size limit (RLIMIT_FSIZE) set far below its size:
the write fails with "File too large", and neither a partial file at the target nor a stray temporary file is left.
Where a file was there before, it is kept whole.

Each writer runs in a subprocess, since the limit applies to the whole process (SIGXFSZ is ignored there, so the
write raises OSError EFBIG instead of killing it)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

LIMIT = 16 << 10  # bytes: every file below is larger

COMMON = """
import sys
from pathlib import Path
import numpy as np
target = Path(sys.argv[1])
"""
WRITERS = {
    "procedural dataset (.h5)": """
        from sae.core.datasets.procedural import write_shapes3d_h5
        write_shapes3d_h5(target, n=64, seed=0)
    """,
    "hybrid samples (.npz)": """
        from sae.clients.results import HybridSamples
        from sae.clients.jobs.sample_writer import write_npz
        n = 64
        chunk = HybridSamples(np.random.rand(n, 64, 64, 3).astype("float32"), np.zeros((n, 12), "float32"),
                              np.zeros((n, 12), "int64"), "independent")
        write_npz(target, iter([chunk]), n)
    """,
    "hybrid samples (.h5)": """
        from sae.clients.results import HybridSamples
        from sae.clients.jobs.sample_writer import write_h5
        n = 64
        chunk = HybridSamples(np.random.rand(n, 64, 64, 3).astype("float32"), np.zeros((n, 12), "float32"),
                              np.zeros((n, 12), "int64"), "independent")
        write_h5(target, iter([chunk]), n)
    """,
    "sample grid (.png)": """
        from sae.core.png import write_png
        write_png(target, np.random.randint(0, 256, (256, 256, 3), dtype=np.uint8))
    """,
    "latents file (.h5)": """
        from sae.core.latents_file import create_latents_file
        create_latents_file(target, {"model": "x"}, rows=8192, dim=12, labels=None)
    """,
    "bench report (.json)": """
        from sae.serving.bench.harness import write_report
        write_report({"cells": [{"p50_ms": float(i), "path": "decode"} for i in range(4000)]}, target)
    """,
    "experiment result (.json)": """
        from sae.experiment.markers import write_atomic
        write_atomic(target, b"{" + b" " * (1 << 20) + b"}")
    """,
    "run weights (model.safetensors)": """
        import torch
        from sae.training.checkpoint import Checkpoint
        from sae.training.config import get_config
        from sae.training.models.zoo import build_model
        from sae.training.weights_file import save_safetensors
        cfg = get_config("sae12-tiny")
        save_safetensors(Checkpoint(config=cfg, model_state=build_model(cfg.model).state_dict(), step=1), target)
    """,
    "training checkpoint (.pt)": """
        import torch
        from sae.training.checkpoint import Checkpoint
        from sae.training.config import get_config
        from sae.training.models.zoo import build_model
        cfg = get_config("sae12-tiny")
        model = build_model(cfg.model)
        optimiser = torch.optim.Adam(model.parameters())
        Checkpoint(config=cfg, model_state=model.state_dict(), optimizer_state=optimiser.state_dict(), step=1,
                   ).save(target)
    """,
}


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _write(kind: str, target: Path, limited: bool) -> subprocess.CompletedProcess:
    code = COMMON + textwrap.dedent(WRITERS[kind])
    return subprocess.run(
        [sys.executable, "-c", code, str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=_limited if limited else None,
    )


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_full_disk_leaves_no_partial_file(kind, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "result"
    result = _write(kind, target, limited=True)
    assert result.returncode != 0, f"{kind} fit under {LIMIT} bytes: the test would prove nothing"
    assert "File too large" in result.stderr, result.stderr[-2000:]
    assert list(folder.iterdir()) == [], f"{kind} left {[p.name for p in folder.iterdir()]}"


@pytest.mark.parametrize("kind", ["latents file (.h5)", "training checkpoint (.pt)", "experiment result (.json)"])
def test_a_full_disk_keeps_the_file_written_before(kind, tmp_path):
    target = tmp_path / "result"
    first = _write(kind, target, limited=False)
    assert first.returncode == 0, first.stderr[-2000:]
    assert target.stat().st_size > LIMIT
    before = target.read_bytes()
    result = _write(kind, target, limited=True)
    assert result.returncode != 0 and "File too large" in result.stderr
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["result"]
