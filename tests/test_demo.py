"""`sae demo` end to end on a tiny setting: render, train, export, a real tritonserver, hybrid samples as a PNG."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import copy_repository

from sae.cli import main
from sae.core import wire
from sae.training.config import get_config

pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_demo_runs_every_stage_to_a_grid_of_hybrid_samples(tmp_path, capsys):
    from PIL import Image

    repo = copy_repository(tmp_path / "repo")
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--repo", str(repo), "--images", "400", "--steps", "5"]) == 0
    printed = capsys.readouterr().out
    assert [f"[{i}/4]" in printed for i in range(1, 5)] == [True] * 4
    assert f"done: {out / 'hybrid_samples.png'}" in printed

    assert (out / "run" / "checkpoints" / "last.pt").is_file()
    assert (repo / wire.HYBRID_SAMPLE / "config.pbtxt").is_file()
    side = get_config("sae12-tiny").model.backbone.image_size
    grid = np.asarray(Image.open(out / "hybrid_samples.png").convert("RGB"))
    assert grid.shape[0] >= 8 * side and grid.shape[1] >= 8 * side  # 64 samples in an 8 x 8 grid
    assert grid.std() > 0  # decoded images, not a blank canvas
