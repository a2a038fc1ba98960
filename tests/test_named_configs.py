"""`sae train NAME` works for every named config: a few steps on procedural data, and the loss falls."""
import dataclasses

import numpy as np
import pytest

from training.config import NAMED_CONFIGS, get_config

STEPS = 6
IMAGES = 24  # 17 train images: six steps of 8 see each about three times, so the loss on them must fall


@pytest.fixture(scope="module")
def small_shapes_file(tmp_path_factory):
    from training.data.procedural import write_shapes3d_h5

    path = tmp_path_factory.mktemp("shapes") / "shapes3d.h5"
    write_shapes3d_h5(path, n=IMAGES, seed=1)
    return path


@pytest.fixture(scope="module")
def celeba_folder(tmp_path_factory):
    """Procedural scenes rendered at 128 px and saved as JPEGs: the CelebA reader's input format."""
    from PIL import Image

    from training.data.procedural import FACTOR_SIZES, Shapes3DRenderer

    folder = tmp_path_factory.mktemp("celeba")
    rng = np.random.default_rng(0)
    idx = np.stack([rng.integers(0, s, IMAGES) for s in FACTOR_SIZES], axis=1)
    for i, image in enumerate(Shapes3DRenderer(image_size=128, supersample=1).render(idx)):
        Image.fromarray(image).save(folder / f"{i:06d}.jpg", quality=95)
    return folder


def _loss_on(trainer, images) -> float:
    """The training objective on a fixed batch, with fixed noise for the variational models."""
    import torch

    from training.trainer import to_model_input

    torch.manual_seed(0)
    with torch.no_grad():
        return trainer.model.training_loss(to_model_input(images, trainer.device))[0].item()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_named_config_trains_and_its_loss_falls(name, tmp_path, small_shapes_file, celeba_folder):
    from training.metrics_log import read_metrics
    from training.trainer import Trainer, TrainerOptions

    cfg = get_config(name)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=8, log_every=1,
                                                             checkpoint_every=1000))
    data = celeba_folder if cfg.dataset == "celeba" else small_shapes_file
    trainer = Trainer(cfg, data, tmp_path / "run", device="cpu",
                      options=TrainerOptions(val_every=1000, tensorboard=False))
    fixed_batch = trainer.data.read(trainer.splits["train"])
    before = _loss_on(trainer, fixed_batch)
    trainer.fit(steps=STEPS, progress=False)
    after = _loss_on(trainer, fixed_batch)
    trainer.close()
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if row["split"] == "train"]
    assert len(losses) == STEPS and np.isfinite(losses).all()
    assert after < before, (before, after, losses)
