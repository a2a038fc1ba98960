"""`sae train NAME` works for every named config: a few steps on procedural data, and the loss falls."""

import dataclasses

import numpy as np
import pytest

from sae.training.config import NAMED_CONFIGS, get_config

STEPS = 6
IMAGES = 24  # 17 train images: six steps of 8 see each about three times, so the loss on them must fall
RFD_STEPS = 3


@pytest.fixture(scope="module")
def small_shapes_file(tmp_path_factory):
    from sae.core.datasets.procedural import write_shapes3d_h5

    path = tmp_path_factory.mktemp("shapes") / "shapes3d.h5"
    write_shapes3d_h5(path, n=IMAGES, seed=1)
    return path


@pytest.fixture(scope="module")
def celeba_folder(tmp_path_factory):
    """Procedural scenes rendered at 128 px and saved as JPEGs: the CelebA reader's input format."""
    from PIL import Image

    from sae.core.datasets.procedural import FACTOR_SIZES, Shapes3DRenderer

    folder = tmp_path_factory.mktemp("celeba")
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, s, IMAGES) for s in FACTOR_SIZES], axis=1)
    for i, image in enumerate(Shapes3DRenderer(image_size=128, supersample=1).render(idx)):
        Image.fromarray(image).save(folder / f"{i:06d}.jpg", quality=95)
    return folder


@pytest.fixture(scope="module")
def rfd_folder(tmp_path_factory):
    """A small robot_finger_datasets/ folder in the dataset's format (tar of PNGs, npz labels and info)."""
    from helpers.rfd_files import write_rfd

    return write_rfd(tmp_path_factory.mktemp("rfd"), n=IMAGES)


def _loss_on(trainer, images) -> float:
    """The training objective on a fixed batch, with fixed noise for the variational models."""
    import torch

    from sae.training.trainer import to_model_input

    torch.manual_seed(0)
    with torch.no_grad():
        return trainer.model.training_loss(to_model_input(images, trainer.device))[0].item()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_named_config_trains_and_its_loss_falls(name, tmp_path, small_shapes_file, celeba_folder, rfd_folder):
    from sae.training.metrics_log import read_metrics
    from sae.training.trainer import Trainer, TrainerOptions

    cfg = get_config(name)
    steps, batch_size = STEPS, 8
    if cfg.model.backbone.image_size >= 128:
        # 128-256 channels at 128 px take minutes a config on 2 CPU cores: the same model at 16 channels here, and
        # each 128 px dataset's full-size config runs once through `sae train` below
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, backbone=dataclasses.replace(cfg.model.backbone, channels=16))
        )
    if cfg.dataset == "rfd":
        steps, batch_size = RFD_STEPS, 4
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, batch_size=batch_size, log_every=1, checkpoint_every=1000)
    )
    data = {"celeba": celeba_folder, "rfd": rfd_folder}.get(cfg.dataset, small_shapes_file)
    trainer = Trainer(
        cfg, data, tmp_path / "run", device="cpu", options=TrainerOptions(val_every=1000, tensorboard=False)
    )
    fixed_batch = trainer.data.read(trainer.splits["train"])
    before = _loss_on(trainer, fixed_batch)
    trainer.fit(steps=steps, progress=False)
    after = _loss_on(trainer, fixed_batch)
    trainer.close()
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if row["split"] == "train"]
    assert len(losses) == steps and np.isfinite(losses).all()
    assert after < before, (before, after, losses)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "channels"), [("vae-rfd", 256), ("sae16-celeba", 128)])
def test_sae_train_runs_a_full_size_128px_config_on_its_dataset_folder(
    name, channels, tmp_path, rfd_folder, celeba_folder
):
    """`sae train` of a 128 px config at its real size, two steps of batch 2, reading the dataset's own format (the
    tar of PNGs, the folder of JPEGs)."""
    from sae.cli import main
    from sae.training.checkpoint import Checkpoint
    from sae.training.metrics_log import read_metrics
    from sae.training.trainer import with_batch_size

    run = tmp_path / "run"
    data = {"rfd": rfd_folder, "celeba": celeba_folder}[get_config(name).dataset]
    assert (
        main(
            [
                "train",
                name,
                "--data",
                str(data),
                "--out",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "2",
                "--val-every",
                "2",
                "--val-batches",
                "1",
            ]
        )
        == 0
    )
    rows = read_metrics(run)
    assert [r["step"] for r in rows if r["split"] == "train"] == [2]
    assert all(np.isfinite(r["loss"]) for r in rows), rows
    assert any(r["split"] == "val" for r in rows)
    checkpoint = Checkpoint.load(run)
    assert checkpoint.step == 2 and checkpoint.config == with_batch_size(get_config(name), 2)
    assert checkpoint.config.model.backbone.channels == channels
