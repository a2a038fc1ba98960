import json

import pytest
import torch

from conftest import tiny_config
from training.checkpoint import Checkpoint, CheckpointError
from training.trainer import Trainer, TrainingError


def _params(run):
    return Checkpoint.load(run).model_state


def test_loss_falls_and_checkpoint_loads_with_weights_only(tmp_path, shapes_file):
    run = tmp_path / "run"
    result = Trainer(tiny_config(batch_size=16, log_every=1), shapes_file, run, device="cpu").fit(
        steps=40, progress=False)
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40 and result.step == 40
    assert sum(losses[-5:]) < 0.93 * sum(losses[:5])  # measured: 0.885
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert raw["step"] == 40 and "strtfms.0.mlp.0.weight" in "".join(raw["model"])
    assert json.loads(raw["config"])["name"] == "sae12-tiny"


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, shapes_file):
    cfg = tiny_config(batch_size=8, checkpoint_every=1000)
    Trainer(cfg, shapes_file, tmp_path / "straight", device="cpu").fit(steps=12, progress=False)
    Trainer(cfg, shapes_file, tmp_path / "split", device="cpu").fit(steps=5, progress=False)
    resumed = Trainer(cfg, shapes_file, tmp_path / "split", device="cpu")
    assert resumed.step == 5
    resumed.fit(steps=12, progress=False)
    a, b = _params(tmp_path / "straight"), _params(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_model_is_refused(tmp_path, shapes_file):
    import dataclasses

    Trainer(tiny_config(batch_size=8), shapes_file, tmp_path / "r", device="cpu").fit(steps=1, progress=False)
    other = tiny_config(batch_size=8)
    other = dataclasses.replace(other, model=dataclasses.replace(other.model, num_variables=6))
    with pytest.raises(TrainingError, match="different model config"):
        Trainer(other, shapes_file, tmp_path / "r", device="cpu")


def test_nan_loss_stops_with_advice(tmp_path, shapes_file):
    trainer = Trainer(tiny_config(batch_size=8), shapes_file, tmp_path / "r", device="cpu")
    with torch.no_grad():
        trainer.model.decoder.initial.fill_(float("nan"))
    with pytest.raises(TrainingError, match="learning rate"):
        trainer.fit(steps=1, progress=False)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpoint.load(tmp_path / "missing")
