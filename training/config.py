"""Training configs and the named configs of the paper (``{model}-{dataset}``) and their CPU-sized twins (``-tiny``).

What a model is lives in ``sae.training.model_config`` (``ModelConfig``: a registered kind, its backbone, its
regulariser
settings); the kinds are in ``training/models/zoo/``, one module each, and importing this module registers them
(see ``../shared/notes/paper-architecture.md``):

* ``sae`` (SAE-k), ``adaae`` (AdaAE), ``ae`` (hourglass autoencoder): pixel BCE only.
* ``vae`` / ``betavae`` (KL weighted by β: 1 / 2), ``betatcvae`` (α·MI + β·TC + γ·dimension-wise KL),
  ``factorvae`` (KL + γ·TC from a discriminator), ``vlae`` (VLAE-k, ladder rungs, KL): variational.
* ``wae`` (MMD with an inverse multiquadratic kernel): deterministic encoder with a prior.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from sae.training.config_error import TrainingConfigError
from sae.training.config_json import from_json_dict
from sae.training.dataset_sizes import DATASET_KINDS, TRAIN_SIZES
from sae.training.model_config import BackboneConfig, LadderConfig, ModelConfig
from sae.training.models.registry import RegulariserConfig, model_kind
from sae.training.models.zoo.betatcvae import BetaTCVAEConfig
from sae.training.models.zoo.factorvae import FactorVAEConfig


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 128
    lr: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    steps: int = 100_000
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    num_workers: int = 0


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: str = "shapes3d"  # which dataset kind the config expects: one of DATASET_KINDS

    def validate(self) -> ExperimentConfig:
        self.model.validate()
        if self.train.batch_size < 1 or self.train.steps < 0 or self.train.lr <= 0:
            raise TrainingConfigError(f"bad training settings: {self.train}")
        if self.dataset not in DATASET_KINDS:
            raise TrainingConfigError(
                f"ExperimentConfig.dataset: unknown dataset {self.dataset!r}; choose one of {', '.join(DATASET_KINDS)}"
            )
        if self.model.regulariser is not None:
            self.model.regulariser.validate_batch(self.train.batch_size)
        needed = self.model.model_kind.min_batch_size
        if self.train.batch_size < needed:
            raise TrainingConfigError(
                f"TrainConfig.batch_size={self.train.batch_size}: {self.model.kind} estimates "
                f"its regulariser over the batch and needs at least {needed}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        return cls(
            name=d["name"],
            model=ModelConfig.from_dict(d["model"]),
            train=from_json_dict(TrainConfig, d["train"]),
            dataset=d.get("dataset", "shapes3d"),
        ).validate()


# ----------------------------------------------------------------------------------------------------------------
# Named configs
# ----------------------------------------------------------------------------------------------------------------
# A CPU-sized backbone: same block layout (so 12 Str-Tfm slots), narrower and with a shorter encoder.
TINY_BACKBONE = BackboneConfig(
    channels=16,
    groups=4,
    encoder_blocks=6,
    encoder_pool_after=(1, 2, 3, 4, 5),
    encoder_mlp=(128, 64),
    decoder_mlp=(64, 128),
)


def _widened(ladder: LadderConfig, factor: float, *, mlps: bool = True) -> LadderConfig:
    """``ladder`` with its rung conv channels (and, with ``mlps``, its MLP widths and features) times ``factor``."""

    def scale(widths):
        return tuple(max(1, round(w * factor)) for w in widths)

    convs = tuple(scale(net) for net in ladder.encoder_rung_convs)
    if not mlps:
        return dataclasses.replace(ladder, encoder_rung_convs=convs)
    return LadderConfig(
        convs,
        scale([ladder.encoder_rung_width])[0],
        scale(ladder.encoder_hidden),
        scale(ladder.decoder_hidden),
        scale([ladder.features])[0],
    )


# The ladder at half width, as the tiny backbone's MLPs and Str-Tfms are.
TINY_LADDER = _widened(LadderConfig(), 0.5)
TINY_TRAIN = TrainConfig(batch_size=64, lr=1e-3, steps=1000, log_every=25, checkpoint_every=250)

# CelebA at 128x128 (notes: latent 32, 16 blocks each side, 128 channels). Five pools/upsamplings as at 64 px, so the
# bottleneck is 4x4; about three blocks per resolution. The 16 decoder slots (15 blocks + output layer) give SAE-16
# one Str-Tfm before each conv, acting at 4,4,4, 8,8,8, 16,16,16, 32,32,32, 64,64,64,64.
CELEBA_BACKBONE = BackboneConfig(
    image_size=128,
    channels=128,
    groups=8,
    encoder_blocks=16,
    encoder_pool_after=(1, 4, 7, 10, 13),
    encoder_mlp=(512, 256),
    decoder_blocks=15,
    decoder_upsample_before=(3, 6, 9, 12),
    decoder_mlp=(256, 512),
)
CELEBA_LATENT = 32
CELEBA_LADDER = _widened(LadderConfig(), 2)  # twice as wide, as the backbone's channels and MLPs are
# The authors' CelebA settings (paper appendix A.2.2; learn_rep config/d/celeba.yaml): batch 32, 200k steps.
CELEBA_TRAIN = TrainConfig(batch_size=32, lr=5e-4, steps=200_000)

# RFD (paper appendix A.2.2): the CelebA settings with the channels of every conv layer doubled and the learning rate
# divided by 10 (128x128, latent 32, batch 32, 200k steps).
RFD_BACKBONE = dataclasses.replace(CELEBA_BACKBONE, channels=2 * CELEBA_BACKBONE.channels)
RFD_LADDER = _widened(CELEBA_LADDER, 2, mlps=False)
RFD_TRAIN = dataclasses.replace(CELEBA_TRAIN, lr=CELEBA_TRAIN.lr / 10)

# The 128 px datasets: their backbone, ladder and training settings (the 64 px ones use the defaults).
_LARGE_DATASETS = {
    "celeba": (CELEBA_BACKBONE, CELEBA_LADDER, CELEBA_TRAIN),
    "rfd": (RFD_BACKBONE, RFD_LADDER, RFD_TRAIN),
}


def _model(
    kind: str,
    latent: int,
    k: int,
    backbone: BackboneConfig,
    dataset: str | None,
    regulariser: RegulariserConfig | None = None,
    ladder: LadderConfig = LadderConfig(),
    strtfm_hidden: tuple[int, ...] = (64, 128),
) -> ModelConfig:
    settings = model_kind(kind)
    regulariser = regulariser or settings.regulariser
    if dataset is not None and regulariser is not None and hasattr(regulariser, "dataset_size"):
        # β-TCVAE's N: this dataset's training split. The field is the kind's own (hasattr above), which the checker
        # cannot see on the base settings class.
        regulariser = dataclasses.replace(regulariser, dataset_size=TRAIN_SIZES[dataset])  # type: ignore[call-arg]
    # Only kinds that read `ladder` (VLAE) get it; the others keep the default so that their configs (and checkpoints)
    # stay as they were.
    return ModelConfig(
        kind, latent, k, strtfm_hidden, backbone, regulariser, ladder if settings.reads_ladder else LadderConfig()
    )


def _paper_models(dataset: str) -> dict[str, ModelConfig]:
    """Every model of the paper on one dataset, keyed by its name's model part (``sae12``, ``betavae``...)."""
    structured_k: tuple[int, ...]  # the k of the SAE-k and VLAE-k models
    if dataset in _LARGE_DATASETS:
        (bb, ladder, _), latent, structured_k = _LARGE_DATASETS[dataset], CELEBA_LATENT, (16,)
    else:
        bb, ladder, latent, structured_k = BackboneConfig(), LadderConfig(), 12, (2, 3, 4, 6, 12)
    models = {f"sae{k}": _model("sae", latent, k, bb, dataset) for k in structured_k}
    models.update({f"vlae{k}": _model("vlae", latent, k, bb, dataset, ladder=ladder) for k in structured_k})
    k = structured_k[-1]
    models[f"adaae{k}"] = _model("adaae", latent, k, bb, dataset)
    for kind in ("ae", "vae", "betavae", "betatcvae", "factorvae", "wae"):
        models[kind] = _model(kind, latent, latent, bb, dataset)
    models["betatcvae6"] = _model("betatcvae", latent, latent, bb, dataset, BetaTCVAEConfig(beta=6.0))
    return models


NAMED_CONFIGS: dict[str, ExperimentConfig] = {}
for _dataset in DATASET_KINDS:
    for _model_name, _m in _paper_models(_dataset).items():
        _name = f"{_model_name}-{_dataset}"
        _train = _LARGE_DATASETS[_dataset][2] if _dataset in _LARGE_DATASETS else TrainConfig()
        NAMED_CONFIGS[_name] = ExperimentConfig(_name, _m, _train, _dataset)

# CPU-sized twins on procedural 3D-Shapes; sae12-tiny / ae-tiny keep their names and sizes (about 108k parameters).
_TINY_TRAIN_SIZE = 14_000  # 70% of `sae data --n 20000`; only β-TCVAE's estimator uses it
for _model_name, _kind, _k in (
    ("sae12", "sae", 12),
    ("adaae12", "adaae", 12),
    ("ae", "ae", 12),
    ("vae", "vae", 12),
    ("betavae", "betavae", 12),
    ("betatcvae", "betatcvae", 12),
    ("factorvae", "factorvae", 12),
    ("wae", "wae", 12),
    ("vlae12", "vlae", 12),
    ("vlae4", "vlae", 4),
    ("sae4", "sae", 4),
    ("sae3", "sae", 3),
):
    _reg = {
        "betatcvae": BetaTCVAEConfig(dataset_size=_TINY_TRAIN_SIZE),
        "factorvae": FactorVAEConfig(discriminator_hidden=256),
    }.get(_kind)
    _name = f"{_model_name}-tiny"
    NAMED_CONFIGS[_name] = ExperimentConfig(
        _name, _model(_kind, 12, _k, TINY_BACKBONE, None, _reg, TINY_LADDER, strtfm_hidden=(32, 64)), TINY_TRAIN
    )


def get_config(name: str) -> ExperimentConfig:
    try:
        return NAMED_CONFIGS[name].validate()
    except KeyError:
        raise TrainingConfigError(
            f"unknown config {name!r}; named configs: {', '.join(sorted(NAMED_CONFIGS))}"
        ) from None
