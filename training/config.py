"""Typed configs and the named configs of the paper (``sae12-shapes3d``) and their CPU-sized twins (``-tiny``)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


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


MODEL_KINDS = ("sae", "adaae", "ae")


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "sae"  # one of MODEL_KINDS
    latent_dim: int = 12
    num_variables: int = 12  # SAE-k: k; ignored by unstructured models (one variable per dimension)
    strtfm_hidden: tuple[int, ...] = (64, 128)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    @property
    def structured(self) -> bool:
        return self.kind in ("sae", "adaae")

    @property
    def variable_sizes(self) -> tuple[int, ...]:
        """Latent dimensions per variable, as hybrid sampling and the bank see them."""
        k = self.num_variables if self.kind == "sae" else self.latent_dim
        return (self.latent_dim // k,) * k

    def validate(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {', '.join(MODEL_KINDS)}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive, got {self.latent_dim}")
        if self.kind == "sae" and (self.num_variables < 1 or self.latent_dim % self.num_variables):
            raise ValueError(f"latent_dim={self.latent_dim} is not divisible by num_variables={self.num_variables}:"
                             " pick k that divides the latent")
        self.backbone.validate()


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
    dataset: str = "shapes3d"

    def validate(self) -> "ExperimentConfig":
        self.model.validate()
        if self.train.batch_size < 1 or self.train.steps < 0 or self.train.lr <= 0:
            raise ValueError(f"bad training settings: {self.train}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        m = dict(d["model"])
        m["backbone"] = _tuples(BackboneConfig, m["backbone"])
        return cls(name=d["name"], model=_tuples(ModelConfig, m), train=_tuples(TrainConfig, d["train"]),
                   dataset=d.get("dataset", "shapes3d")).validate()


def _tuples(cls, d: dict[str, Any]):
    """Rebuild a dataclass from JSON, turning lists back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# A CPU-sized backbone: same block layout (so 12 Str-Tfm slots), narrower and with a shorter encoder.
TINY_BACKBONE = BackboneConfig(channels=16, groups=4, encoder_blocks=6, encoder_pool_after=(1, 2, 3, 4, 5),
                               encoder_mlp=(128, 64), decoder_mlp=(64, 128))
TINY_TRAIN = TrainConfig(batch_size=64, lr=1e-3, steps=1500, log_every=25, checkpoint_every=250)

NAMED_CONFIGS: dict[str, ExperimentConfig] = {
    "sae12-shapes3d": ExperimentConfig("sae12-shapes3d", ModelConfig("sae", 12, 12)),
    "ae-shapes3d": ExperimentConfig("ae-shapes3d", ModelConfig("ae", 12, 12)),
    "adaae12-shapes3d": ExperimentConfig("adaae12-shapes3d", ModelConfig("adaae", 12, 12)),
    "sae12-tiny": ExperimentConfig("sae12-tiny", ModelConfig("sae", 12, 12, (32, 64), TINY_BACKBONE), TINY_TRAIN),
    "ae-tiny": ExperimentConfig("ae-tiny", ModelConfig("ae", 12, 12, (32, 64), TINY_BACKBONE), TINY_TRAIN),
}
for _k in (2, 3, 4, 6):
    NAMED_CONFIGS[f"sae{_k}-shapes3d"] = ExperimentConfig(f"sae{_k}-shapes3d", ModelConfig("sae", 12, _k))


def get_config(name: str) -> ExperimentConfig:
    try:
        return NAMED_CONFIGS[name].validate()
    except KeyError:
        raise ValueError(f"unknown config {name!r}; named configs: {', '.join(sorted(NAMED_CONFIGS))}") from None
