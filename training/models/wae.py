"""WAE-MMD (Tolstikhin et al. 2018): a deterministic hourglass autoencoder whose aggregate code is pulled towards
N(0, I) by an MMD penalty with the inverse multiquadratic kernel (weight 10, C = latent dimension, as trained)."""
from __future__ import annotations

import torch

from training.config import WAEConfig
from training.losses import mmd_imq
from training.models.autoencoder import Autoencoder
from training.models.variational import standard_normal_sample


class WAE(Autoencoder):
    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal_sample(n, self.cfg.latent_dim, next(self.parameters()), generator)

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reg: WAEConfig = self.cfg.regulariser
        logits, z = self(x)
        z = z.float()
        reconstruction = self.reconstruction_loss(logits, x)
        mmd = mmd_imq(z, torch.randn_like(z), scale=reg.kernel_scale)
        return reconstruction + reg.weight * mmd, {"reconstruction": reconstruction, "mmd": mmd}
