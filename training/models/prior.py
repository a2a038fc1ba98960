"""The standard normal prior of the VAE family and WAE: what ``NAME_prior_sample`` draws codes from."""
from __future__ import annotations

import torch


def standard_normal_sample(n: int, dim: int, like: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws of N(0, I_dim) on ``like``'s device (``generator`` must live there too)."""
    return torch.randn(n, dim, generator=generator, device=like.device, dtype=like.dtype)


class StandardNormalPrior:
    """Mixin for an ``Autoencoder`` kind with the prior N(0, I) over its ``cfg.latent_dim`` dimensions."""

    has_prior = True

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal_sample(n, self.cfg.latent_dim, next(self.parameters()), generator)
