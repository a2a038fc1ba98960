"""Typed configs and the named configs of the paper (``{model}-{dataset}``) and their CPU-sized twins (``-tiny``).

Model kinds (see ``../shared/notes/paper-architecture.md``):

* ``sae`` (SAE-k), ``adaae`` (AdaAE), ``ae`` (hourglass autoencoder): pixel BCE only.
* ``vae`` / ``betavae`` (KL weighted by β: 1 / 2), ``betatcvae`` (α·MI + β·TC + γ·dimension-wise KL),
  ``factorvae`` (KL + γ·TC from a discriminator), ``vlae`` (VLAE-k, ladder rungs, KL): variational.
* ``wae`` (MMD with an inverse multiquadratic kernel): deterministic encoder with a prior.

Each regularised kind carries its settings in ``ModelConfig.regulariser``, a dataclass of the kind's own type; left as
``None`` it is filled with the kind's defaults (``default_regulariser``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Union


@dataclass(frozen=True)
class BackboneConfig:
    """Conv backbone; defaults are the authors' 64x64 model (12 blocks each side, 64 channels)."""

    image_size: int = 64
    image_channels: int = 3
    channels: int = 64
    groups: int = 8
    first_kernel: int = 5
    encoder_blocks: int = 12
    encoder_pool_after: tuple[int, ...] = (1, 4, 7, 10, 12)  # 1-based block numbers
    encoder_mlp: tuple[int, ...] = (256, 128)
    decoder_blocks: int = 11
    decoder_upsample_before: tuple[int, ...] = (2, 4, 7, 10)  # plus the output layer's own upsampling
    decoder_mlp: tuple[int, ...] = (128, 256)  # hourglass decoders only

    @property
    def encoder_final_size(self) -> int:
        return self.image_size >> len(self.encoder_pool_after)

    @property
    def decoder_initial_size(self) -> int:
        return self.image_size >> (len(self.decoder_upsample_before) + 1)

    @property
    def decoder_slots(self) -> int:
        """Places a latent variable can enter the decoder: before each conv block and before the output layer."""
        return self.decoder_blocks + 1

    def validate(self) -> None:
        if self.image_size % (1 << len(self.encoder_pool_after)) or self.encoder_final_size < 1:
            raise ValueError(f"image_size {self.image_size} cannot be max-pooled {len(self.encoder_pool_after)} times")
        if self.image_size % (1 << (len(self.decoder_upsample_before) + 1)):
            raise ValueError(f"image_size {self.image_size} is not a power-of-two multiple of the decoder's start")
        if self.channels % self.groups:
            raise ValueError(f"channels {self.channels} must be divisible by GroupNorm groups {self.groups}")
        for name, blocks, total in (("encoder_pool_after", self.encoder_pool_after, self.encoder_blocks),
                                    ("decoder_upsample_before", self.decoder_upsample_before, self.decoder_blocks)):
            if any(not 1 <= b <= total for b in blocks):
                raise ValueError(f"{name}={blocks} names blocks outside 1..{total}")


# ----------------------------------------------------------------------------------------------------------------
# Regularisers (one dataclass per family; the weights are those of the issue / the notes)
# ----------------------------------------------------------------------------------------------------------------
SHAPES3D_TRAIN_SIZE = 336_000  # 70% of 480,000 (clients.datasets.split_indices)
MPI3D_TRAIN_SIZE = 725_760  # 70% of 1,036,800
CELEBA_TRAIN_SIZE = 141_819  # 70% of 202,599
RFD_TRAIN_SIZE = 725_760  # 70% of the 1,036,800 simulated images of RFD's `finger` variant


@dataclass(frozen=True)
class VariationalConfig:
    """VAE / β-VAE / VLAE: ``BCE + beta · KL(q(z|x) || N(0, I))``."""

    beta: float = 1.0


@dataclass(frozen=True)
class BetaTCVAEConfig:
    """β-TCVAE: ``BCE + alpha · MI + beta · TC + gamma · dimension-wise KL`` (Chen et al. 2018).

    ``beta`` defaults to 4, the issue's value (the paper's best); the authors' trained model used 6
    (``betatcvae6-*`` configs). ``dataset_size`` is N of the minibatch-stratified (or -weighted) estimator: the size of
    the training split.
    """

    alpha: float = 1.0
    beta: float = 4.0
    gamma: float = 1.0
    dataset_size: int = SHAPES3D_TRAIN_SIZE
    minibatch_stratified: bool = True


@dataclass(frozen=True)
class FactorVAEConfig:
    """FactorVAE: ``BCE + KL + gamma · TC``, TC from a discriminator with its own Adam (Kim & Mnih 2018).

    The discriminator is ``latent → hidden × layers → 2`` with BatchNorm; its optimiser settings are Kim & Mnih's.
    """

    gamma: float = 40.0
    discriminator_hidden: int = 1000
    discriminator_layers: int = 3
    discriminator_lr: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.5, 0.9)


@dataclass(frozen=True)
class WAEConfig:
    """WAE-MMD: ``BCE + weight · MMD²(q(z), N(0, I))`` with the IMQ kernel ``C / (C + ||x − y||²)``.

    ``kernel_scale`` is C; ``None`` means the latent dimension, as the authors trained it.
    """

    weight: float = 10.0
    kernel_scale: float | None = None


RegulariserConfig = Union[VariationalConfig, BetaTCVAEConfig, FactorVAEConfig, WAEConfig]

MODEL_KINDS = ("sae", "adaae", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae")
STRUCTURED_KINDS = ("sae", "adaae")  # structural decoder (Str-Tfm layers)
CHUNKED_KINDS = ("sae", "vlae")  # the latent is k variables of latent_dim / k dimensions
VARIATIONAL_KINDS = ("vae", "betavae", "betatcvae", "factorvae", "vlae")
PRIOR_KINDS = (*VARIATIONAL_KINDS, "wae")  # models with a N(0, I) prior to sample from

_DEFAULT_REGULARISERS: dict[str, RegulariserConfig] = {
    "vae": VariationalConfig(beta=1.0),
    "betavae": VariationalConfig(beta=2.0),
    "vlae": VariationalConfig(beta=1.0),
    "betatcvae": BetaTCVAEConfig(),
    "factorvae": FactorVAEConfig(),
    "wae": WAEConfig(),
}


def default_regulariser(kind: str) -> RegulariserConfig | None:
    """The regulariser settings a kind gets when none are given (``None`` for the unregularised AE family)."""
    return _DEFAULT_REGULARISERS.get(kind)


@dataclass(frozen=True)
class LadderConfig:
    """VLAE rungs (notes, "VLAE-k"), used by kind ``vlae`` only. The defaults are the authors' rungs (learn_rep
    ``config/a/e/ladder/12.yaml`` and ``config/a/d/ladder/_ladder.yaml``) on the shared backbone.

    Encoder rung: a small net of its own, then the maximum over space, then an MLP
    ``* → *encoder_hidden → 2·d`` (posterior mean and log-scale of its d = latent/k dimensions). Counted from the
    shallowest rung, the net of rung j < ``len(encoder_rung_convs)`` is 3x3 conv blocks (GroupNorm, Mish) with the
    channels ``encoder_rung_convs[j]``; every deeper rung has no convs, and its pooled features pass one linear layer
    of width ``encoder_rung_width`` (then Mish) before the MLP. The authors flatten the map instead of pooling it;
    on the shared 64-channel backbone that alone would add millions of parameters, and pooling is their rung's own
    option (``pool-rung: max``).
    Decoder rung: MLP ``d → *decoder_hidden → features``, broadcast over space and concatenated as extra channels to
    the input of the conv that follows.
    """

    encoder_rung_convs: tuple[tuple[int, ...], ...] = ((16, 8), (32, 32), (32,))
    encoder_rung_width: int = 128
    encoder_hidden: tuple[int, ...] = (64, 32)
    decoder_hidden: tuple[int, ...] = (64, 128)
    features: int = 16

    def rung_convs(self, depth_rank: int) -> tuple[int, ...]:
        """Conv channels of the rung that is ``depth_rank``-th from the shallowest (0: the shallowest)."""
        return self.encoder_rung_convs[depth_rank] if depth_rank < len(self.encoder_rung_convs) else ()


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "sae"  # one of MODEL_KINDS
    latent_dim: int = 12
    num_variables: int = 12  # SAE-k / VLAE-k: k; ignored by unstructured models (one variable per dimension)
    strtfm_hidden: tuple[int, ...] = (64, 128)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    regulariser: RegulariserConfig | None = None  # None: the kind's defaults (default_regulariser)
    ladder: LadderConfig = field(default_factory=LadderConfig)

    def __post_init__(self):
        if self.regulariser is None:
            object.__setattr__(self, "regulariser", default_regulariser(self.kind))

    @property
    def structured(self) -> bool:
        return self.kind in STRUCTURED_KINDS

    @property
    def variational(self) -> bool:
        return self.kind in VARIATIONAL_KINDS

    @property
    def has_prior(self) -> bool:
        return self.kind in PRIOR_KINDS

    @property
    def variable_sizes(self) -> tuple[int, ...]:
        """Latent dimensions per variable, as hybrid sampling and the bank see them.

        SAE-k: its k chunks; VLAE-k: its k rungs; every other model: one variable per dimension.
        """
        k = self.num_variables if self.kind in CHUNKED_KINDS else self.latent_dim
        return (self.latent_dim // k,) * k

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"ModelConfig.kind: unknown model kind {self.kind!r}; choose one of "
                             f"{', '.join(MODEL_KINDS)}")
        if self.latent_dim < 1:
            raise ValueError(f"ModelConfig.latent_dim must be positive, got {self.latent_dim}")
        if self.kind in CHUNKED_KINDS or self.kind == "adaae":
            k = self.num_variables
            if k < 1 or self.latent_dim % k:
                raise ValueError(f"ModelConfig.latent_dim={self.latent_dim} is not divisible by "
                                 f"ModelConfig.num_variables={k}: pick k that divides the latent")
            if k > self.backbone.decoder_slots:
                raise ValueError(f"ModelConfig.num_variables={k} exceeds the decoder's {self.backbone.decoder_slots} "
                                 f"slots (decoder_blocks + 1); use fewer variables or more decoder blocks")
        expected = type(default_regulariser(self.kind))
        if not isinstance(self.regulariser, expected):
            raise ValueError(f"ModelConfig.regulariser: kind {self.kind!r} takes "
                             f"{'no regulariser' if expected is type(None) else expected.__name__}, "
                             f"got {type(self.regulariser).__name__}")
        _validate_regulariser(self.regulariser)
        if self.kind == "vlae":
            _validate_ladder(self.ladder, self.backbone.groups)
        self.backbone.validate()


def _validate_ladder(ladder: LadderConfig, groups: int) -> None:
    convs = [c for net in ladder.encoder_rung_convs for c in net]
    if any(c < 1 or c % groups for c in convs):
        raise ValueError(f"ModelConfig.ladder.encoder_rung_convs={ladder.encoder_rung_convs}: every channel count must "
                         f"be positive and divisible by GroupNorm groups {groups}")
    if min(ladder.encoder_rung_width, ladder.features, *ladder.encoder_hidden, *ladder.decoder_hidden) < 1:
        raise ValueError(f"ModelConfig.ladder: encoder_rung_width, features and the hidden widths must be positive, "
                         f"got {ladder}")


def _validate_regulariser(reg: RegulariserConfig | None) -> None:
    if reg is None:
        return
    for f in dataclasses.fields(reg):
        value = getattr(reg, f.name)
        if isinstance(value, float) and f.name not in ("discriminator_lr",) and value < 0:
            raise ValueError(f"ModelConfig.regulariser.{f.name}={value} must not be negative")
    if isinstance(reg, BetaTCVAEConfig) and reg.dataset_size < 2:
        raise ValueError(f"ModelConfig.regulariser.dataset_size={reg.dataset_size}: give the training split's size")
    if isinstance(reg, FactorVAEConfig) and (reg.discriminator_lr <= 0 or reg.discriminator_hidden < 1):
        raise ValueError(f"ModelConfig.regulariser: discriminator_lr ({reg.discriminator_lr}) and "
                         f"discriminator_hidden ({reg.discriminator_hidden}) must be positive")
    if isinstance(reg, WAEConfig) and reg.kernel_scale is not None and reg.kernel_scale <= 0:
        raise ValueError(f"ModelConfig.regulariser.kernel_scale={reg.kernel_scale} must be positive (or None)")


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


DATASET_KINDS = ("shapes3d", "mpi3d", "celeba", "rfd")


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: str = "shapes3d"  # which dataset kind the config expects: one of DATASET_KINDS

    def validate(self) -> "ExperimentConfig":
        self.model.validate()
        if self.train.batch_size < 1 or self.train.steps < 0 or self.train.lr <= 0:
            raise ValueError(f"bad training settings: {self.train}")
        if self.dataset not in DATASET_KINDS:
            raise ValueError(f"ExperimentConfig.dataset: unknown dataset {self.dataset!r}; choose one of "
                             f"{', '.join(DATASET_KINDS)}")
        reg = self.model.regulariser
        if isinstance(reg, BetaTCVAEConfig) and reg.dataset_size <= self.train.batch_size - 1:
            raise ValueError(f"ModelConfig.regulariser.dataset_size={reg.dataset_size} must exceed "
                             f"TrainConfig.batch_size - 1 = {self.train.batch_size - 1}")
        if self.model.kind in ("factorvae", "wae", "betatcvae") and self.train.batch_size < 2:
            raise ValueError(f"TrainConfig.batch_size={self.train.batch_size}: {self.model.kind} estimates its "
                             "regulariser over the batch and needs at least 2")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        m = dict(d["model"])
        m["backbone"] = _tuples(BackboneConfig, m["backbone"])
        kind = m.get("kind", "sae")
        if kind not in MODEL_KINDS:
            raise ValueError(f"ModelConfig.kind: unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
        reg = m.get("regulariser")
        m["regulariser"] = None if reg is None else _tuples(type(default_regulariser(kind)), reg)
        if "ladder" in m:
            m["ladder"] = _tuples(LadderConfig, m["ladder"])
        return cls(name=d["name"], model=_tuples(ModelConfig, m), train=_tuples(TrainConfig, d["train"]),
                   dataset=d.get("dataset", "shapes3d")).validate()


def _tuples(cls, d: dict[str, Any]):
    """Rebuild a dataclass from JSON, turning lists back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{k: _tuple(v) for k, v in d.items()})


def _tuple(v):
    """JSON lists, nested ones too, back into tuples."""
    return tuple(_tuple(x) for x in v) if isinstance(v, list) else v


# ----------------------------------------------------------------------------------------------------------------
# Named configs
# ----------------------------------------------------------------------------------------------------------------
# A CPU-sized backbone: same block layout (so 12 Str-Tfm slots), narrower and with a shorter encoder.
TINY_BACKBONE = BackboneConfig(channels=16, groups=4, encoder_blocks=6, encoder_pool_after=(1, 2, 3, 4, 5),
                               encoder_mlp=(128, 64), decoder_mlp=(64, 128))


def _widened(ladder: LadderConfig, factor: float, *, mlps: bool = True) -> LadderConfig:
    """``ladder`` with its rung conv channels (and, with ``mlps``, its MLP widths and features) times ``factor``."""
    def scale(widths):
        return tuple(max(1, round(w * factor)) for w in widths)

    convs = tuple(scale(net) for net in ladder.encoder_rung_convs)
    if not mlps:
        return dataclasses.replace(ladder, encoder_rung_convs=convs)
    return LadderConfig(convs, scale([ladder.encoder_rung_width])[0], scale(ladder.encoder_hidden),
                        scale(ladder.decoder_hidden), scale([ladder.features])[0])


# The ladder at half width, as the tiny backbone's MLPs and Str-Tfms are.
TINY_LADDER = _widened(LadderConfig(), 0.5)
TINY_TRAIN = TrainConfig(batch_size=64, lr=1e-3, steps=1000, log_every=25, checkpoint_every=250)

# CelebA at 128x128 (notes: latent 32, 16 blocks each side, 128 channels). Five pools/upsamplings as at 64 px, so the
# bottleneck is 4x4; about three blocks per resolution. The 16 decoder slots (15 blocks + output layer) give SAE-16
# one Str-Tfm before each conv, acting at 4,4,4, 8,8,8, 16,16,16, 32,32,32, 64,64,64,64.
CELEBA_BACKBONE = BackboneConfig(image_size=128, channels=128, groups=8, encoder_blocks=16,
                                 encoder_pool_after=(1, 4, 7, 10, 13), encoder_mlp=(512, 256), decoder_blocks=15,
                                 decoder_upsample_before=(3, 6, 9, 12), decoder_mlp=(256, 512))
CELEBA_LATENT = 32
CELEBA_LADDER = _widened(LadderConfig(), 2)  # twice as wide, as the backbone's channels and MLPs are
# The authors' CelebA settings (paper appendix A.2.2; learn_rep config/d/celeba.yaml): batch 32, 200k steps.
CELEBA_TRAIN = TrainConfig(batch_size=32, lr=5e-4, steps=200_000)

# RFD (paper appendix A.2.2): the CelebA settings with the channels of every conv layer doubled and the learning rate
# divided by 10 (128x128, latent 32, batch 32, 200k steps).
RFD_BACKBONE = dataclasses.replace(CELEBA_BACKBONE, channels=2 * CELEBA_BACKBONE.channels)
RFD_LADDER = _widened(CELEBA_LADDER, 2, mlps=False)
RFD_TRAIN = dataclasses.replace(CELEBA_TRAIN, lr=CELEBA_TRAIN.lr / 10)

_TRAIN_SIZES = {"shapes3d": SHAPES3D_TRAIN_SIZE, "mpi3d": MPI3D_TRAIN_SIZE, "celeba": CELEBA_TRAIN_SIZE,
                "rfd": RFD_TRAIN_SIZE}
# The 128 px datasets: their backbone, ladder and training settings (the 64 px ones use the defaults).
_LARGE_DATASETS = {"celeba": (CELEBA_BACKBONE, CELEBA_LADDER, CELEBA_TRAIN),
                   "rfd": (RFD_BACKBONE, RFD_LADDER, RFD_TRAIN)}


def _model(kind: str, latent: int, k: int, backbone: BackboneConfig, dataset: str | None,
           regulariser: RegulariserConfig | None = None, ladder: LadderConfig = LadderConfig(),
           strtfm_hidden: tuple[int, ...] = (64, 128)) -> ModelConfig:
    if kind == "betatcvae" and dataset is not None:
        regulariser = dataclasses.replace(regulariser or BetaTCVAEConfig(), dataset_size=_TRAIN_SIZES[dataset])
    # Only VLAE reads `ladder`; the others keep the default so that their configs (and checkpoints) stay as they were.
    return ModelConfig(kind, latent, k, strtfm_hidden, backbone, regulariser,
                       ladder if kind == "vlae" else LadderConfig())


def _paper_models(dataset: str) -> dict[str, ModelConfig]:
    """Every model of the paper on one dataset, keyed by its name's model part (``sae12``, ``betavae``...)."""
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
for _model_name, _kind, _k in (("sae12", "sae", 12), ("adaae12", "adaae", 12), ("ae", "ae", 12), ("vae", "vae", 12),
                               ("betavae", "betavae", 12), ("betatcvae", "betatcvae", 12),
                               ("factorvae", "factorvae", 12), ("wae", "wae", 12), ("vlae12", "vlae", 12),
                               ("vlae4", "vlae", 4), ("sae4", "sae", 4), ("sae3", "sae", 3)):
    _reg = {"betatcvae": BetaTCVAEConfig(dataset_size=_TINY_TRAIN_SIZE),
            "factorvae": FactorVAEConfig(discriminator_hidden=256)}.get(_kind)
    _name = f"{_model_name}-tiny"
    NAMED_CONFIGS[_name] = ExperimentConfig(
        _name, _model(_kind, 12, _k, TINY_BACKBONE, None, _reg, TINY_LADDER, strtfm_hidden=(32, 64)), TINY_TRAIN)


def get_config(name: str) -> ExperimentConfig:
    try:
        return NAMED_CONFIGS[name].validate()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; named configs: {', '.join(sorted(NAMED_CONFIGS))}") from None
