"""`sae experiment` without training: grids, TOML files, cell selection, dry-runs, markers and cell-file reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sae.cli import main
from sae.experiment.cellfile import METRIC_KEYS, draw_mode, main_metrics
from sae.experiment.grid import load_grid
from sae.experiment.grid_spec import GridError, expand, parse_shard, select, shard
from sae.experiment.grid_toml import load_toml
from sae.experiment.markers import read_json, write_json
from sae.experiment.named_grids import named_grids
from sae.experiment.thumbs import MAX_THUMB_BYTES, read_png, write_thumbnail
from sae.training.config import NAMED_CONFIGS, get_config

TOML_GRID = """
name = "toml-grid"
description = "two tiny models"
models = ["sae12", "vae"]
config_suffix = "-tiny"
seeds = [0, 3]
steps = 30
batch_size = 16

[dataset]
procedural_images = 2000

[eval]
num_images = 16
fid_images = 8
train_codes = 64
classifier_images = 200
dci_regressor = "lasso"
heldout_images = 16

[[arms]]
name = "no_ball"
exclude = {shape = [2]}
models = ["sae12"]
seeds = [0]
"""


def dry_run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["experiment", *args, "--out", "unused-out", "--dry-run"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", ["paper-shapes3d", "paper-mpi3d", "paper-celeba", "cpu-shapes3d"])
def test_dry_run_of_every_named_grid_lists_each_cell_with_its_estimate(capsys, name):
    grid = load_grid(name)
    code, out, _ = dry_run(capsys, name)
    assert code == 0
    for cell in expand(grid):
        line = next(line for line in out.splitlines() if line.startswith(cell.cell_id + " "))
        assert cell.config_name in line and float(line.split()[-1]) > 0
    assert "estimated compute" in out
    arms = {c.arm.name for c in expand(grid) if c.arm}
    assert arms == ({"no_ball", "extreme_orientations"} if name.endswith("shapes3d") else set())


def test_dry_run_of_the_rfd_grid(capsys):
    rfd = sorted(n for n in NAMED_CONFIGS if n.endswith("-rfd"))
    assert rfd, "paper-rfd is built from the named configs ending in -rfd (training/config.py)"
    code, out, _ = dry_run(capsys, "paper-rfd")
    assert code == 0
    assert all(f"{n} " in out for n in rfd)


def test_paper_grids_use_the_papers_settings():
    grid = load_grid("paper-shapes3d")
    assert grid.steps == 100_000 and grid.seeds == (0, 1, 2) and grid.eval.fid_images == 10_000
    assert {c.config_name for c in expand(grid) if c.arm is None} == {
        f"{m}-shapes3d"
        for m in ("sae12", "sae3", "adaae12", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae12")
    }


def test_cpu_grid_fits_two_cpu_cores():
    grid = load_grid("cpu-shapes3d")
    cells = expand(grid)
    assert len(grid.seeds) >= 2 and grid.steps == 1500 and grid.batch_size == 64
    assert all(c.estimated_minutes() <= 20 for c in cells)
    # 4 h is the target; the bank's ranges over 4,096 training images keep the 68 exports inside it
    assert grid.bank_range_images == 4096
    assert sum(c.estimated_minutes() for c in cells) <= 240
    arms = [c for c in cells if c.arm]
    assert {c.model for c in arms} == {"sae12", "vae", "betavae"} and {c.seed for c in arms} == {0, 1}
    orientation = next(c.arm for c in arms if c.arm.name == "extreme_orientations")
    assert orientation.exclude == {"orientation": (0, 1, 13, 14)}
    cell = arms[0]
    assert cell.pretrain_steps == round(0.8 * cell.steps) and cell.finetune_steps == cell.steps - cell.pretrain_steps


def test_paper_grids_train_as_the_named_configs_do():
    grids = {name: load_grid(name) for name in ("paper-shapes3d", "paper-mpi3d", "paper-celeba")}
    assert (grids["paper-shapes3d"].batch_size, grids["paper-shapes3d"].steps) == (128, 100_000)
    assert (grids["paper-celeba"].batch_size, grids["paper-celeba"].steps) == (32, 200_000)
    for grid in grids.values():
        for cell in expand(grid):
            train = get_config(cell.config_name).train
            assert (cell.experiment_config().train.batch_size, cell.steps) == (train.batch_size, train.steps)


def test_cell_seed_sets_the_training_seed_and_sae3_tiny_exists():
    cells = {c.cell_id: c for c in expand(load_grid("cpu-shapes3d"))}
    assert cells["sae3-s1"].experiment_config().train.seed == 1
    assert len(get_config("sae3-tiny").model.variable_sizes) == 3


def test_toml_grid_builds_the_same_dataclasses_and_dry_runs(tmp_path, capsys):
    path = tmp_path / "grid.toml"
    path.write_text(TOML_GRID)
    grid = load_toml(path)
    assert [c.cell_id for c in expand(grid)] == ["sae12-s0", "vae-s0", "sae12-s3", "vae-s3", "sae12-s0-no_ball"]
    assert grid.arms[0].exclude == {"shape": (2,)} and grid.eval.fid_images == 8
    code, out, _ = dry_run(capsys, str(path))
    assert code == 0 and "sae12-s0-no_ball" in out and "24+3x6" in out  # 80% of 30 steps, then 6 per mode


BAD_KEYS = {
    "colour": "colour = 1\n" + TOML_GRID,
    "fid_imgs": TOML_GRID.replace("heldout_images = 16", "heldout_images = 16\nfid_imgs = 3"),
    "freeze": TOML_GRID + "freeze = 'encoder'\n",  # inside the last [[arms]] table
}


@pytest.mark.parametrize("key", sorted(BAD_KEYS))
def test_unknown_toml_keys_are_named(tmp_path, capsys, key):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_KEYS[key])
    with pytest.raises(GridError, match=f"unknown key '{key}'"):
        load_toml(path)
    code, _, err = dry_run(capsys, str(path))
    assert code == 2 and f"unknown key '{key}'" in err


def test_toml_model_without_named_config_is_refused(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(TOML_GRID.replace('"vae"]', '"nosuchmodel"]'))
    with pytest.raises(GridError, match="nosuchmodel-tiny"):
        load_toml(path)


@pytest.mark.parametrize("text", ["2/2", "1/0", "a/b", "-1/3", "3", ""])
def test_bad_shards_are_refused(capsys, text):
    with pytest.raises(GridError, match="--shard"):
        parse_shard(text)
    if text:
        code, _, err = dry_run(capsys, "cpu-shapes3d", f"--shard={text}")
        assert code == 2 and "--shard" in err


def test_shard_and_cells_select_every_nth_and_globs():
    cells = expand(load_grid("cpu-shapes3d"))
    assert [c.cell_id for c in shard(cells, "1/3")] == [c.cell_id for c in cells[1::3]]
    assert {c.cell_id for n in range(4) for c in shard(cells, f"{n}/4")} == {c.cell_id for c in cells}
    picked = select(cells, "vae-*,sae3-s1")
    assert {c.cell_id for c in picked} == {
        "sae3-s1",
        "vae-s0",
        "vae-s1",
        "vae-s0-no_ball",
        "vae-s1-no_ball",
        "vae-s0-extreme_orientations",
        "vae-s1-extreme_orientations",
    }
    with pytest.raises(GridError, match="'nothing-\\*' matches no cell"):
        select(cells, "nothing-*")


def test_unknown_grid_is_named(capsys):
    code, _, err = dry_run(capsys, "no-such-grid")
    assert code == 2 and "no-such-grid" in err and "cpu-shapes3d" in err


def test_markers_are_whole_or_absent(tmp_path):
    path = write_json(tmp_path / "m" / "done.json", {"step": 3})
    assert read_json(path) == {"step": 3}
    assert [p.name for p in path.parent.iterdir()] == ["done.json"]  # no temp file left
    path.write_text('{"step": ')  # a torn file (as a non-atomic writer could leave) counts as not done
    assert read_json(path) is None and read_json(tmp_path / "missing.json") is None


def test_thumbnails_round_trip_and_shrink_to_the_limit(tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    assert np.array_equal(read_png(write_thumbnail(tmp_path / "s.png", small)), small)
    noisy = rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)
    path = write_thumbnail(tmp_path / "n.png", noisy)
    assert path.stat().st_size <= MAX_THUMB_BYTES and read_png(path).shape[0] < 600


def test_metrics_are_read_defensively_from_eval_json():
    result = {
        "reconstruction": {"bce_per_image": 1.5, "mse_per_pixel": 0.01},
        "distances": {
            "FID": {
                "reconstructions": 3.0,
                "hybrid_samples": 4.0,
                "images": 8,
                "prior_samples": "not applicable: no prior",
            }
        },
        "disentanglement": {
            "summary": {
                "dci_regressor": "lasso",
                "dci_disentanglement": 0.2,
                "dci_completeness": 0.3,
                "dci_informativeness_test": 0.4,
                "mig": 0.1,
                "irs": 0.5,
                "sap": 0.05,
                "modularity": 0.9,
                "explicitness_test": 0.8,
            },
            "dci_lasso": {"importance_matrix": [[0.5, 0.0], [0.1, 0.2]]},
        },
    }
    metrics, importance = main_metrics(json.loads(json.dumps(result)))
    assert set(metrics) == set(METRIC_KEYS)
    assert metrics["fid_prior"] is None and metrics["fid_images"] == 8 and metrics["explicitness"] == 0.8
    assert importance == [[0.5, 0.0], [0.1, 0.2]]
    assert draw_mode(result) == "unknown" and draw_mode({"sampling": {"draw_mode": "per_variable"}}) == "per_variable"
    result["distances"]["FID"]["prior_samples"] = 7.5
    assert main_metrics(result)[0]["fid_prior"] == 7.5


def test_every_named_grid_validates():
    for grid in named_grids().values():
        assert grid.validate() is grid


def test_a_stale_server_record_never_stops_a_process_that_is_not_that_server(tmp_path):
    import os

    from sae.experiment.server import PID_RECORD, stop_stale_server

    write_json(tmp_path / PID_RECORD, {"pid": os.getpid(), "repository": str(tmp_path / "repo")})
    messages = []
    assert stop_stale_server(tmp_path, tmp_path / "repo", messages.append) is None  # this pytest is no tritonserver
    assert not (tmp_path / PID_RECORD).exists() and messages == []
