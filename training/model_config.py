"""What a model is: the backbone, the VLAE ladder and :class:`ModelConfig`, whose ``kind`` names a registered model
kind (``sae.training.models.registry``; the built-in ones are in ``training/models/zoo/``, see
``../shared/notes/paper-architecture.md``).

A kind's regulariser settings live beside its model; ``ModelConfig.regulariser`` holds an instance of the kind's own
class, and left as ``None`` it is filled with the kind's defaults. The kind's capabilities (``has_prior``, ...) are
read from the registry, so this module imports no model and no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sae.training.config_error import TrainingConfigError
from sae.training.config_json import from_json_dict
from sae.training.models.registry import ModelKind, RegulariserConfig, UnknownModelKind, find_kind, model_kind


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
            raise TrainingConfigError(
                f"image_size {self.image_size} cannot be max-pooled {len(self.encoder_pool_after)} times"
            )
        if self.image_size % (1 << (len(self.decoder_upsample_before) + 1)):
            raise TrainingConfigError(
                f"image_size {self.image_size} is not a power-of-two multiple of the decoder's start"
            )
        if self.channels % self.groups:
            raise TrainingConfigError(f"channels {self.channels} must be divisible by GroupNorm groups {self.groups}")
        for name, blocks, total in (
            ("encoder_pool_after", self.encoder_pool_after, self.encoder_blocks),
            ("decoder_upsample_before", self.decoder_upsample_before, self.decoder_blocks),
        ):
            if any(not 1 <= b <= total for b in blocks):
                raise TrainingConfigError(f"{name}={blocks} names blocks outside 1..{total}")


@dataclass(frozen=True)
class LadderConfig:
    """VLAE rungs (notes, "VLAE-k"), read only by kinds with ``reads_ladder`` (``vlae``). The defaults are the
    authors' rungs (learn_rep ``config/a/e/ladder/12.yaml`` and ``config/a/d/ladder/_ladder.yaml``) on the shared
    backbone.

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

    def validate(self, groups: int) -> None:
        convs = [c for net in self.encoder_rung_convs for c in net]
        if any(c < 1 or c % groups for c in convs):
            raise TrainingConfigError(
                f"ModelConfig.ladder.encoder_rung_convs={self.encoder_rung_convs}: every "
                f"channel count must be positive and divisible by GroupNorm groups {groups}"
            )
        if min(self.encoder_rung_width, self.features, *self.encoder_hidden, *self.decoder_hidden) < 1:
            raise TrainingConfigError(
                f"ModelConfig.ladder: encoder_rung_width, features and the hidden widths must be positive, got {self}"
            )


@dataclass(frozen=True)
class ModelConfig:
    kind: str = "sae"  # a registered model kind (sae.training.models.registry.model_kinds())
    latent_dim: int = 12
    num_variables: int = 12  # SAE-k / VLAE-k: k; ignored by kinds that do not place variables in the decoder
    strtfm_hidden: tuple[int, ...] = (64, 128)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    regulariser: RegulariserConfig | None = None  # None: the kind's defaults
    ladder: LadderConfig = field(default_factory=LadderConfig)

    def __post_init__(self):
        kind = find_kind(self.kind)
        if self.regulariser is None and kind is not None:
            object.__setattr__(self, "regulariser", kind.regulariser)

    @property
    def model_kind(self) -> ModelKind:
        return _registered(self.kind)

    @property
    def structured(self) -> bool:
        return self.model_kind.structured

    @property
    def variational(self) -> bool:
        return self.model_kind.variational

    @property
    def has_prior(self) -> bool:
        return self.model_kind.has_prior

    @property
    def variable_sizes(self) -> tuple[int, ...]:
        """Latent dimensions per variable, as hybrid sampling and the bank see them (its draw groups).

        Kinds with a chunked latent (SAE-k: its k chunks; VLAE-k: its k rungs) have k variables; every other kind one
        variable per dimension.
        """
        k = self.num_variables if self.model_kind.chunked_latent else self.latent_dim
        return (self.latent_dim // k,) * k

    def validate(self) -> None:
        kind = self.model_kind
        if self.latent_dim < 1:
            raise TrainingConfigError(f"ModelConfig.latent_dim must be positive, got {self.latent_dim}")
        if kind.places_variables:
            k = self.num_variables
            if k < 1 or self.latent_dim % k:
                raise TrainingConfigError(
                    f"ModelConfig.latent_dim={self.latent_dim} is not divisible by "
                    f"ModelConfig.num_variables={k}: pick k that divides the latent"
                )
            if k > self.backbone.decoder_slots:
                raise TrainingConfigError(
                    f"ModelConfig.num_variables={k} exceeds the decoder's "
                    f"{self.backbone.decoder_slots} slots (decoder_blocks + 1); use fewer "
                    "variables or more decoder blocks"
                )
        expected = kind.regulariser_type
        if not isinstance(self.regulariser, expected or type(None)):
            raise TrainingConfigError(
                f"ModelConfig.regulariser: kind {self.kind!r} takes "
                f"{'no regulariser' if expected is None else expected.__name__}, "
                f"got {type(self.regulariser).__name__}"
            )
        if self.regulariser is not None:
            self.regulariser.validate()
        if kind.reads_ladder:
            self.ladder.validate(self.backbone.groups)
        self.backbone.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The ``model`` part of a config JSON; configs written before ``regulariser``/``ladder`` existed lack
        them, and mean the defaults."""
        m = dict(d)
        m["backbone"] = from_json_dict(BackboneConfig, m["backbone"])
        kind = _registered(m.get("kind", "sae"))
        reg = m.get("regulariser")
        if reg is not None and kind.regulariser_type is None:
            raise TrainingConfigError(f"ModelConfig.regulariser: kind {kind.name!r} takes no regulariser, got {reg}")
        m["regulariser"] = None if reg is None else from_json_dict(kind.regulariser_type, reg)
        if "ladder" in m:
            m["ladder"] = from_json_dict(LadderConfig, m["ladder"])
        return from_json_dict(cls, m)


def _registered(name: str) -> ModelKind:
    """The registered kind; a ValueError naming ``ModelConfig.kind`` when there is none of that name."""
    try:
        return model_kind(name)
    except UnknownModelKind as e:
        raise UnknownModelKind(f"ModelConfig.kind: {e}") from None
