"""Variational models on the hourglass backbone: VAE, β-VAE, β-TCVAE and FactorVAE.

The encoder outputs 2·D numbers per image: the posterior mean and log-scale (log σ) of a diagonal Gaussian
(notes, "Backbone": VAE-family encoders output 24). ``encode`` returns the mean, the code that export serves and the
bank stores; ``training_loss`` decodes a reparameterised sample.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from training.config import BetaTCVAEConfig, FactorVAEConfig, ModelConfig, VariationalConfig
from training.losses import (FactorDiscriminator, beta_tcvae_terms, factorvae_discriminator_loss,
                             factorvae_tc_estimate, gaussian_kl, reparameterize)
from training.models.autoencoder import Autoencoder
from training.models.backbone import Encoder


def standard_normal_sample(n: int, dim: int, like: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws of N(0, I_dim) on ``like``'s device (``generator`` must live there too)."""
    return torch.randn(n, dim, generator=generator, device=like.device, dtype=like.dtype)


class VariationalAutoencoder(Autoencoder):
    """VAE (β = 1) and β-VAE (β = 2 by default): ``BCE + β · KL(q(z|x) || N(0, I))``."""

    def _build_encoder(self) -> nn.Module:
        return Encoder(self.cfg.backbone, 2 * self.cfg.latent_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x), each [B, D]."""
        mu, log_scale = self.encoder(x).chunk(2, dim=1)
        return mu, 2.0 * log_scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def prior_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return standard_normal_sample(n, self.cfg.latent_dim, next(self.parameters()), generator)

    def regulariser_terms(self, z: torch.Tensor, mu: torch.Tensor,
                          logvar: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted regulariser and its unweighted named terms."""
        reg: VariationalConfig = self.cfg.regulariser
        kl = gaussian_kl(mu, logvar)
        return reg.beta * kl, {"kl": kl}

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mu, logvar = self.posterior(x)
        mu, logvar = mu.float(), logvar.float()
        z = reparameterize(mu, logvar)
        reconstruction = self.reconstruction_loss(self.decode(z), x)
        regulariser, terms = self.regulariser_terms(z, mu, logvar)
        return reconstruction + regulariser, {"reconstruction": reconstruction, **terms}


class BetaTCVAE(VariationalAutoencoder):
    """``BCE + α · MI + β · TC + γ · dimension-wise KL`` (Chen et al. 2018); α 1, β 4, γ 1 by default."""

    def regulariser_terms(self, z, mu, logvar):
        reg: BetaTCVAEConfig = self.cfg.regulariser
        t = beta_tcvae_terms(z, mu, logvar, reg.dataset_size, minibatch_stratified=reg.minibatch_stratified)
        weighted = reg.alpha * t["mutual_info"] + reg.beta * t["total_correlation"] + reg.gamma * t["dimwise_kl"]
        return weighted, t


class FactorVAE(VariationalAutoencoder):
    """``BCE + KL + γ · TC`` (Kim & Mnih 2018), TC estimated by a discriminator between q(z) and its marginals.

    The discriminator is an auxiliary module: the main loss sees it with detached weights (so the VAE's optimiser
    never moves it, whatever parameters that optimiser holds), and ``auxiliary_loss("discriminator")`` trains it on the
    detached latents of the last ``training_loss`` call against the same batch with each dimension permuted across
    the batch.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        reg: FactorVAEConfig = cfg.regulariser
        self.discriminator = FactorDiscriminator(cfg.latent_dim, reg.discriminator_hidden, reg.discriminator_layers)
        self._last_latents: torch.Tensor | None = None

    def auxiliary_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def regulariser_terms(self, z, mu, logvar):
        reg: FactorVAEConfig = self.cfg.regulariser
        self._last_latents = z.detach()
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        tc = factorvae_tc_estimate(lambda v: functional_call(self.discriminator, frozen, (v,)), z).float()
        kl = gaussian_kl(mu, logvar)
        return kl + reg.gamma * tc, {"kl": kl, "total_correlation": tc}

    def auxiliary_loss(self, name: str) -> torch.Tensor:
        if name != "discriminator":
            return super().auxiliary_loss(name)
        if self._last_latents is None:
            raise RuntimeError("FactorVAE.auxiliary_loss('discriminator') needs the latents of a training_loss call; "
                               "call training_loss(x) first")
        if self._last_latents.shape[0] < 2:
            raise ValueError("FactorVAE's discriminator needs a batch of at least 2 latents to permute")
        return factorvae_discriminator_loss(self.discriminator, self._last_latents, self._last_latents)


VARIATIONAL_MODELS: dict[str, type[VariationalAutoencoder]] = {
    "vae": VariationalAutoencoder,
    "betavae": VariationalAutoencoder,
    "betatcvae": BetaTCVAE,
    "factorvae": FactorVAE,
}
