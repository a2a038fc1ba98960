import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
from conftest import tiny_config

from sae.cli import main as sae_main
from sae.training.checkpoint import BEST, Checkpoint, CheckpointError
from sae.training.metrics_log import read_metrics
from sae.training.trainer import Trainer, TrainerOptions, TrainingError


def _params(run):
    return Checkpoint.load(run).model_state


def _write_images(path, n: int, size: int):
    with h5py.File(path, "w") as f:
        f["images"] = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    return path


def _losses(rows):
    """(step, split, loss) of each CSV row: everything but the timing."""
    return [(r["step"], r["split"], r["loss"]) for r in rows]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, shapes_file):
    """40 steps of batch 16, a train row every step, validation every 10 steps on 2 val batches."""
    run = tmp_path_factory.mktemp("logged") / "run"
    options = TrainerOptions(val_every=10, val_batches=2)
    result = Trainer(tiny_config(batch_size=16, log_every=1), shapes_file, run, device="cpu", options=options).fit(
        steps=40, progress=False
    )
    return run, result


def test_loss_falls_and_checkpoint_loads_with_weights_only(logged_run):
    run, result = logged_run
    losses = [r["loss"] for r in read_metrics(run) if r["split"] == "train"]
    assert len(losses) == 40 and result.step == 40
    assert sum(losses[-5:]) < 0.93 * sum(losses[:5])  # measured: 0.885
    raw = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert raw["step"] == 40 and "strtfms.0.mlp.0.weight" in "".join(raw["model"])
    assert json.loads(raw["config"])["name"] == "sae12-tiny"


def test_csv_tensorboard_and_png_hold_the_logged_steps(logged_run):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, result = logged_run
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["split"] == "train"] == list(range(1, 41))
    val = [r for r in rows if r["split"] == "val"]
    assert [r["step"] for r in val] == [10, 20, 30, 40]
    assert all(r["images_per_second"] > 0 and r["reconstruction"] == r["loss"] for r in rows if r["split"] == "train")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 41))
    assert [e.step for e in events.Scalars("val/loss")] == [10, 20, 30, 40]
    assert [e.value for e in events.Scalars("val/loss")] == pytest.approx([r["loss"] for r in val])
    png = Image.open(run / "loss_curve.png")
    assert png.format == "PNG" and png.size == (600, 400)
    assert np.asarray(png.convert("L")).std() > 10  # something is drawn on it
    assert result.val_loss == val[-1]["loss"] and result.best_val_loss == min(r["loss"] for r in val)


def test_best_checkpoint_is_the_lowest_validation_loss(tmp_path, shapes_file):
    trainer = Trainer(
        tiny_config(batch_size=4),
        shapes_file,
        tmp_path / "r",
        device="cpu",
        options=TrainerOptions(val_every=1, tensorboard=False),
    )
    scripted = iter([7.0, 3.0, 5.0, 4.0])  # validation losses at steps 1..4: the best is step 2
    saved = {}

    def validate():
        saved[trainer.step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return {"loss": next(scripted)}

    trainer.validate = validate
    trainer.fit(steps=4, progress=False)
    best, last = Checkpoint.load(tmp_path / "r", which=BEST), Checkpoint.load(tmp_path / "r")
    assert best.step == 2 and last.step == 4 and last.extra["best_val_loss"] == 3.0
    assert all(torch.equal(best.model_state[k], saved[2][k]) for k in saved[2])
    assert not all(torch.equal(best.model_state[k], last.model_state[k]) for k in saved[2])


class _Interrupted(Exception):
    pass


def test_interrupted_run_resumes_without_repeating_or_losing_steps(tmp_path, shapes_file):
    """Killed before step 4 (last checkpoint at 2; best.pt and logs already at 3): resumed, it equals a straight run."""
    cfg = tiny_config(batch_size=4, checkpoint_every=2, log_every=1)
    options = TrainerOptions(val_every=3, val_batches=1)
    Trainer(cfg, shapes_file, tmp_path / "straight", device="cpu", options=options).fit(steps=6, progress=False)

    crashing = Trainer(cfg, shapes_file, tmp_path / "split", device="cpu", options=options)
    train_step = crashing.train_step

    def crash_at_step_4(images):
        if crashing.step == 3:
            raise _Interrupted
        return train_step(images)

    crashing.train_step = crash_at_step_4
    with pytest.raises(_Interrupted):
        crashing.fit(steps=6, progress=False)
    assert max(r["step"] for r in read_metrics(tmp_path / "split")) == 3
    assert Checkpoint.load(tmp_path / "split", which=BEST).step == 3

    resumed = Trainer(cfg, shapes_file, tmp_path / "split", device="cpu", options=options)
    assert resumed.step == 2
    resumed.fit(steps=6, progress=False)
    a, b = _params(tmp_path / "straight"), _params(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    best_a = Checkpoint.load(tmp_path / "straight", which=BEST)
    best_b = Checkpoint.load(tmp_path / "split", which=BEST)
    assert best_a.step == best_b.step and all(torch.equal(best_a.model_state[k], best_b.model_state[k]) for k in a)
    assert _losses(read_metrics(tmp_path / "split")) == _losses(read_metrics(tmp_path / "straight"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "split" / "tensorboard"))
    events.Reload()  # the events of step 3 before the crash are purged
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("val/loss")] == [3, 6]


def test_factorvae_trains_its_discriminator_and_resumes_exactly(tmp_path, shapes_file):
    """A stochastic model with an auxiliary optimiser: the per-step seeds and the saved discriminator state make a
    resumed run repeat the uninterrupted one bit for bit."""
    from sae.training.config import get_config

    cfg = get_config("factorvae-tiny")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=4, log_every=1))
    options = TrainerOptions(tensorboard=False, val_every=2, val_batches=1)
    straight = Trainer(cfg, shapes_file, tmp_path / "straight", device="cpu", options=options)
    initial = {k: v.clone() for k, v in straight.model.discriminator.state_dict().items()}
    straight.fit(steps=4, progress=False)
    Trainer(cfg, shapes_file, tmp_path / "split", device="cpu", options=options).fit(steps=2, progress=False)
    Trainer(cfg, shapes_file, tmp_path / "split", device="cpu", options=options).fit(steps=4, progress=False)
    a, b = Checkpoint.load(tmp_path / "straight"), Checkpoint.load(tmp_path / "split")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    trained = a.auxiliary["discriminator"]
    assert not torch.equal(trained["module"]["net.0.weight"], initial["net.0.weight"])
    assert trained["optimizer"]["param_groups"][0]["lr"] == cfg.model.regulariser.discriminator_lr
    assert tuple(trained["optimizer"]["param_groups"][0]["betas"]) == (0.5, 0.9)
    rows = read_metrics(tmp_path / "split")
    assert _losses(rows) == _losses(read_metrics(tmp_path / "straight"))
    assert all(np.isfinite(r["discriminator_loss"]) for r in rows if r["split"] == "train")


def test_resuming_with_other_settings_is_refused(tmp_path, shapes_file):
    Trainer(tiny_config(batch_size=8), shapes_file, tmp_path / "r", device="cpu").fit(steps=1, progress=False)
    other = tiny_config(batch_size=8)
    other = dataclasses.replace(other, model=dataclasses.replace(other.model, num_variables=6))
    with pytest.raises(TrainingError, match="different model config"):
        Trainer(other, shapes_file, tmp_path / "r", device="cpu")
    with pytest.raises(TrainingError, match="resume with --batch-size 8"):
        Trainer(tiny_config(batch_size=4), shapes_file, tmp_path / "r", device="cpu")
    with pytest.raises(TrainingError, match="was trained with no --freeze"):
        Trainer(
            tiny_config(batch_size=8),
            shapes_file,
            tmp_path / "r",
            device="cpu",
            options=TrainerOptions(freeze="encoder"),
        )


def test_nan_loss_stops_with_advice(tmp_path, shapes_file):
    trainer = Trainer(tiny_config(batch_size=8), shapes_file, tmp_path / "r", device="cpu")
    with torch.no_grad():
        trainer.model.decoder.initial.fill_(float("nan"))
    with pytest.raises(TrainingError, match="learning rate"):
        trainer.fit(steps=1, progress=False)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        Checkpoint.load(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Checkpoint.load(tmp_path / "missing")


def test_freezing_the_encoder_keeps_its_weights_exactly(tmp_path, shapes_file, trained_run):
    before = _params(trained_run)
    options = TrainerOptions(freeze="encoder", init_from=trained_run, tensorboard=False)
    Trainer(tiny_config(batch_size=8), shapes_file, tmp_path / "ft", device="cpu", options=options).fit(
        steps=2, progress=False
    )
    after = Checkpoint.load(tmp_path / "ft")
    frozen = [k for k in before if k.startswith("encoder.")]
    trained = [k for k in before if k.startswith("decoder.")]
    assert frozen and all(torch.equal(before[k], after.model_state[k]) for k in frozen)
    assert not all(torch.equal(before[k], after.model_state[k]) for k in trained)
    assert after.step == 2 and after.extra["freeze"] == "encoder"
    assert after.extra["init_from"] == str(trained_run.resolve())


def test_sae_train_freezes_the_decoder_from_an_init_run(tmp_path, shapes_file, trained_run, capsys):
    before = _params(trained_run)
    rc = sae_main(
        [
            "train",
            "sae12-tiny",
            "--data",
            str(shapes_file),
            "--out",
            str(tmp_path / "ft"),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--val-every",
            "2",
            "--val-batches",
            "1",
            "--freeze",
            "decoder",
            "--init",
            str(trained_run),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert "best val loss" in capsys.readouterr().out
    after = Checkpoint.load(tmp_path / "ft")
    frozen = [k for k in before if k.startswith("decoder.")]
    assert frozen and all(torch.equal(before[k], after.model_state[k]) for k in frozen)
    assert not all(torch.equal(before[k], after.model_state[k]) for k in before if k.startswith("encoder."))
    assert after.config.train.batch_size == 4 and (tmp_path / "ft" / "checkpoints" / "best.pt").is_file()


def test_init_from_another_model_says_which_config_to_use(tmp_path, shapes_file, trained_run):
    from sae.training.config import get_config

    with pytest.raises(TrainingError, match="fine-tune it with config sae12-tiny"):
        Trainer(
            get_config("ae-tiny"),
            shapes_file,
            tmp_path / "r",
            device="cpu",
            options=TrainerOptions(init_from=trained_run),
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sae99-nope", "--data", "{data}"], "argument config: unknown config 'sae99-nope'; "),
        (["sae12-tiny", "--data", "{missing}"], "does not exist; make a procedural 3D-Shapes with `sae data shapes3d"),
        (["sae12-tiny", "--data", "{small}"], "has 32x32 images but config sae12-tiny expects 64x64"),
        (["sae12-tiny", "--data", "{few}"], "fewer than batch size 64; use a smaller --batch-size"),
        (["sae12-tiny", "--data", "{data}", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    ],
)
def test_bad_setups_say_what_to_change(tmp_path, shapes_file, capsys, argv, message):
    paths = {
        "data": shapes_file,
        "missing": tmp_path / "nope.h5",
        "small": _write_images(tmp_path / "small.h5", 16, 32),
        "few": _write_images(tmp_path / "few.h5", 32, 64),
    }
    argv = [a.format(**paths) for a in argv]
    assert sae_main(["train", *argv, "--out", str(tmp_path / "run"), "--steps", "1", "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_freeze_part_is_refused():
    with pytest.raises(TrainingError, match="use one of encoder, decoder"):
        TrainerOptions(freeze="middle").validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_uses_bf16_and_channels_last_and_loads_on_cpu(tmp_path, shapes_file):
    trainer = Trainer(
        tiny_config(batch_size=16),
        shapes_file,
        tmp_path / "r",
        device="cuda",
        options=TrainerOptions(tensorboard=False),
    )
    assert trainer.model.decoder.initial.is_contiguous(memory_format=torch.channels_last)
    result = trainer.fit(steps=3, progress=False)
    assert result.step == 3 and np.isfinite(result.last_loss)
    state = Checkpoint.load(tmp_path / "r", map_location="cpu").model_state
    assert all(t.device.type == "cpu" for t in state.values())


def test_excluded_factor_values_never_reach_training_and_export_uses_the_same_rows(tmp_path, shapes_file):
    from sae.core.datasets import open_dataset
    from sae.training.checkpoint import Checkpoint
    from sae.training.trainer import Trainer, TrainerOptions

    trainer = Trainer(
        tiny_config(batch_size=8),
        shapes_file,
        tmp_path / "r",
        device="cpu",
        options=TrainerOptions(exclude={"shape": [2]}),
    )
    for split in ("train", "val", "test"):
        factors = trainer.data.read_factors(trainer.splits[split])
        assert len(factors) and not (factors[:, 4] == 2).any(), split
    trainer.fit(steps=1, progress=False)
    trainer.close()
    extra = Checkpoint.load(tmp_path / "r").extra
    assert extra["exclude"] == {"shape": [2]}
    assert len(open_dataset(shapes_file, exclude=extra["exclude"]).rows) == len(trainer.data.rows)
