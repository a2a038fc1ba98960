"""VAE and β-VAE on the hourglass backbone: ``BCE + β · KL(q(z|x) || N(0, I))`` (β 1 and 2).

The encoder outputs 2·D numbers per image: the posterior mean and log-scale (log σ) of a diagonal Gaussian
(notes, "Backbone": VAE-family encoders output 24). ``encode`` returns the mean, the code that export serves and the
bank stores; ``training_loss`` decodes a reparameterised sample. The other variational kinds derive from this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from sae.training.losses import gaussian_kl, reparameterize
from sae.training.models.autoencoder import Autoencoder
from sae.training.models.backbone import Encoder
from sae.training.models.prior import StandardNormalPrior
from sae.training.models.registry import RegulariserConfig, register_model


@dataclass(frozen=True)
class VariationalConfig(RegulariserConfig):
    """VAE / β-VAE / VLAE: ``BCE + beta · KL(q(z|x) || N(0, I))``."""

    beta: float = 1.0


@register_model("betavae", regulariser=VariationalConfig(beta=2.0))
@register_model("vae", regulariser=VariationalConfig(beta=1.0))  # (the lower decorator registers first)
class VariationalAutoencoder(StandardNormalPrior, Autoencoder):
    """VAE (β = 1) and β-VAE (β = 2 by default)."""

    variational = True

    def _build_encoder(self) -> nn.Module:
        return Encoder(self.cfg.backbone, 2 * self.cfg.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each [B, D]."""
        mu, log_scale = self.encoder(x).chunk(2, dim=1)
        return mu, 2.0 * log_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def regulariser_terms(
        self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted regulariser and its unweighted named terms."""
        reg = cast(VariationalConfig, self.cfg.regulariser)  # cfg.validate() checked it is the kind's class
        kl = gaussian_kl(mu, logvar)
        return reg.beta * kl, {"kl": kl}

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mu, logvar = self.posterior(x)
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar)
        reconstruction = self.reconstruction_loss(self.decode(z), x)
        regulariser, terms = self.regulariser_terms(z, mu, logvar)
        return reconstruction + regulariser, {"reconstruction": reconstruction, **terms}
