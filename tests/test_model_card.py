"""A trained run is a folder others can use: its model card (README.md) and its weights as model.safetensors, which
load_model and the export read as they read the .pt checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import copy_repository, tiny_config

from sae import load_model
from sae.core.version import git_commit
from sae.export.model_set import checkpoint_file
from sae.training.checkpoint import Checkpoint, CheckpointError
from sae.training.model_card import CARD_FILE, refresh_model_card
from sae.training.options import TrainerOptions
from sae.training.trainer import Trainer
from sae.training.weights_file import SAFETENSORS_FILE, read_metadata
from tests.test_client_imports import BLOCK_TORCH

ROOT = Path(__file__).resolve().parents[1]
STEPS = 4


@pytest.fixture(scope="module")
def micro_run(shapes_file, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("card") / "run"
    cfg = tiny_config(steps=STEPS, batch_size=8, log_every=2, checkpoint_every=2)
    torch.set_num_threads(1)
    trainer = Trainer(cfg, shapes_file, run, device="cpu", options=TrainerOptions(val_batches=1, tensorboard=False))
    try:
        trainer.fit(progress=False)
    finally:
        trainer.close()
    return run


def shared_copy(run: Path, dst: Path) -> Path:
    """What a user shares: the card, the config and the safetensors weights, no checkpoints."""
    dst.mkdir()
    for name in (CARD_FILE, "config.json", SAFETENSORS_FILE):
        shutil.copyfile(run / name, dst / name)
    return dst


def test_the_card_names_kind_config_data_label_steps_losses_and_commit(micro_run, shapes_file):
    card = (micro_run / CARD_FILE).read_text()
    assert card.startswith("---\nlibrary_name: sae-serving\n")
    assert "# sae12-tiny: Structural Autoencoder (Leeb et al., ICLR 2023)" in card
    assert "| kind | `sae`: " in card and "latent dimension 12" in card
    assert "| config | `sae12-tiny` " in card and "[config.json](config.json)" in card
    assert f"`shapes3d` from `{shapes_file.resolve()}`" in card
    assert "| data label | **procedural**" in card  # the fixture is the package's procedural render
    assert f"| steps | {STEPS} (the config's schedule: {STEPS}), batch 8," in card
    losses = next(line for line in card.splitlines() if line.startswith("| final training losses |"))
    assert "loss " in losses and "reconstruction " in losses and f"(step {STEPS})" in losses
    assert "| validation loss | " in card and "best " in card
    commit = git_commit()
    assert (f"| commit | `{commit}` |" if commit else "not trained from a git checkout") in card
    assert "Not evaluated yet" in card


def test_safetensors_weights_equal_the_checkpoints(micro_run):
    from safetensors.torch import load_file

    ckpt = Checkpoint.load(micro_run)
    weights = load_file(str(micro_run / SAFETENSORS_FILE))
    assert set(weights) == set(ckpt.model_state)
    assert all(torch.equal(weights[k], ckpt.model_state[k]) for k in weights)
    meta = read_metadata(micro_run / SAFETENSORS_FILE)
    assert int(meta["step"]) == ckpt.step == STEPS and meta["kind"] == "sae" and meta["data_label"] == "procedural"
    assert json.loads(meta["extra"]) == ckpt.extra


def test_load_model_and_export_read_either_form_with_equal_outputs(micro_run, tmp_path):
    shared = shared_copy(micro_run, tmp_path / "shared")
    assert checkpoint_file(shared) == shared / SAFETENSORS_FILE  # what `sae export` reads from a shared folder
    assert checkpoint_file(micro_run).name == "last.pt"
    from_pt = load_model(micro_run)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = from_pt.encode(x)
        for other in (load_model(micro_run / SAFETENSORS_FILE), load_model(shared)):
            assert not other.training
            assert torch.equal(other.encode(x), z) and torch.equal(other.decode(z), from_pt.decode(z))
    pt, st = Checkpoint.load(micro_run), Checkpoint.load(shared)
    assert (st.step, st.extra, st.config) == (pt.step, pt.extra, pt.config)  # export's data path and exclusions


def test_sae_export_serves_a_shared_folder_of_safetensors_weights(micro_run, tmp_path, capsys):
    from sae.cli import main

    shared = shared_copy(micro_run, tmp_path / "shared")
    repo = copy_repository(tmp_path / "model_repository")
    assert main(["export", str(shared), "--repo", str(repo), "--name", "st", "--bank-size", "16"]) == 0
    assert f"exported sae12-tiny (step {STEPS})" in capsys.readouterr().out
    manifest = json.loads((repo / "st_encode" / "1" / "export.json").read_text())
    assert manifest["checkpoint"] == str(shared / SAFETENSORS_FILE) and manifest["checkpoint_step"] == STEPS


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage_header", "no_config"])
def test_a_damaged_weights_file_is_one_clear_error(micro_run, tmp_path, damage):
    shared = shared_copy(micro_run, tmp_path / "shared")
    path = shared / SAFETENSORS_FILE
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage_header":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + data[100:])
    else:
        (shared / "config.json").unlink()
    with pytest.raises(CheckpointError) as error:
        load_model(shared)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert ("config.json" in message) if damage == "no_config" else ("not a readable safetensors file" in message)


def test_sae_eval_into_the_run_folder_adds_its_headline_metrics_to_the_card(
    micro_run, shapes_file, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    result = {
        "model": "sae12",
        "data": {"label": "procedural"},
        "reconstruction": {"images": 512, "bce_per_image": 1234.5, "mse_per_pixel": 0.0123},
        "distances": {"FID": {"status": "skipped (--fid-images 0)"}},
        "disentanglement": {
            "summary": {
                "dci_regressor": "lasso",
                "dci_disentanglement": 0.25,
                "dci_completeness": 0.5,
                "mig": 0.125,
                "sap": 0.0625,
            }
        },
    }
    from sae.cli import main
    from sae.evaluation import harness

    def evaluate(config):  # the harness's files without a server: eval.json in --out
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "eval.json").write_text(json.dumps(result))
        return result

    monkeypatch.setattr(harness, "evaluate", evaluate)
    assert main(["eval", "--data", str(shapes_file), "--model", "sae12", "--out", str(run / "eval")]) == 0
    card = (run / CARD_FILE).read_text()
    assert "From [eval/eval.json](eval/eval.json) (`sae eval`, model `sae12`)" in card
    assert "- reconstruction (procedural, 512 test images): BCE 1234.5 per image, MSE 0.01230 per pixel" in card
    assert "MIG 0.125" in card and "FID: skipped" in card and "Not evaluated yet" not in card


def test_a_readme_the_user_wrote_is_left_alone(micro_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(micro_run, run)
    (run / CARD_FILE).write_text("# my notes\n")
    assert refresh_model_card(run) is None
    assert (run / CARD_FILE).read_text() == "# my notes\n"
    assert refresh_model_card(tmp_path) is None, "not a run folder"


def test_the_card_renders_without_torch(micro_run):
    code = (
        BLOCK_TORCH.split("import importlib")[0] + "from sae.training.model_card import render_card\n"
        f"assert 'procedural' in render_card({str(micro_run)!r})\nassert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
