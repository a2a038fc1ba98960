"""WAE-MMD (Tolstikhin et al. 2018): a deterministic hourglass autoencoder whose aggregate code is pulled towards
N(0, I) by an MMD penalty with the inverse multiquadratic kernel (weight 10, C = latent dimension, as trained)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch

from sae.training.config_error import TrainingConfigError
from sae.training.losses import mmd_imq
from sae.training.models.autoencoder import Autoencoder
from sae.training.models.prior import StandardNormalPrior
from sae.training.models.registry import RegulariserConfig, register_model


@dataclass(frozen=True)
class WAEConfig(RegulariserConfig):
    """``BCE + weight · MMD²(q(z), N(0, I))`` with the IMQ kernel ``C / (C + ||x − y||²)``.

    ``kernel_scale`` is C; ``None`` means the latent dimension, as the authors trained it.
    """

    weight: float = 10.0
    kernel_scale: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.kernel_scale is not None and self.kernel_scale <= 0:
            raise TrainingConfigError(
                f"ModelConfig.regulariser.kernel_scale={self.kernel_scale} must be positive (or None)"
            )


@register_model("wae", regulariser=WAEConfig())
class WAE(StandardNormalPrior, Autoencoder):
    min_batch_size = 2  # the MMD compares the batch's codes with as many prior draws

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reg = cast(WAEConfig, self.cfg.regulariser)  # cfg.validate() checked it is the kind's class
        logits, z = self(x)
        z = z.float()
        reconstruction = self.reconstruction_loss(logits, x)
        mmd = mmd_imq(z, torch.randn_like(z), scale=reg.kernel_scale)
        return reconstruction + reg.weight * mmd, {"reconstruction": reconstruction, "mmd": mmd}
