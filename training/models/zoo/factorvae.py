"""FactorVAE (Kim & Mnih 2018): ``BCE + KL + γ · TC``, TC from a discriminator with its own Adam."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.func import functional_call

from sae.training.config_error import TrainingConfigError
from sae.training.losses import FactorDiscriminator, factorvae_discriminator_loss, factorvae_tc_estimate, gaussian_kl
from sae.training.model_config import ModelConfig
from sae.training.models.registry import RegulariserConfig, register_model
from sae.training.models.zoo.vae import VariationalAutoencoder
from sae.training.options import TrainingDataError


@dataclass(frozen=True)
class FactorVAEConfig(RegulariserConfig):
    """The discriminator is ``latent → hidden × layers → 2`` with BatchNorm; its optimiser settings
    (``discriminator_lr``, ``discriminator_betas``: the trainer's auxiliary Adam for module ``discriminator``) are
    Kim & Mnih's.
    """

    gamma: float = 40.0
    discriminator_hidden: int = 1000
    discriminator_layers: int = 3
    discriminator_lr: float = 1e-4
    discriminator_betas: tuple[float, float] = (0.5, 0.9)

    def validate(self) -> None:
        if self.discriminator_lr <= 0 or self.discriminator_hidden < 1:
            raise TrainingConfigError(
                f"ModelConfig.regulariser: discriminator_lr ({self.discriminator_lr}) and "
                f"discriminator_hidden ({self.discriminator_hidden}) must be positive"
            )
        super().validate()


@register_model("factorvae", regulariser=FactorVAEConfig())
class FactorVAE(VariationalAutoencoder):
    """TC estimated by a discriminator between q(z) and its marginals.

    The discriminator is an auxiliary module: the main loss sees it with detached weights (so the VAE's optimiser
    never moves it, whatever parameters that optimiser holds), and ``auxiliary_loss("discriminator")`` trains it on the
    detached latents of the last ``training_loss`` call against the same batch with each dimension permuted across
    the batch.
    """

    min_batch_size = 2

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        reg = cast(FactorVAEConfig, cfg.regulariser)  # cfg.validate() checked it is the kind's class
        self.discriminator = FactorDiscriminator(cfg.latent_dim, reg.discriminator_hidden, reg.discriminator_layers)
        self._last_latents: torch.Tensor | None = None

    def auxiliary_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def regulariser_terms(self, z, mu, logvar):
        reg = cast(FactorVAEConfig, self.cfg.regulariser)  # cfg.validate() checked it is the kind's class
        self._last_latents = z.detach()
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        tc = factorvae_tc_estimate(lambda v: functional_call(self.discriminator, frozen, (v,)), z).float()
        kl = gaussian_kl(mu, logvar)
        return kl + reg.gamma * tc, {"kl": kl, "total_correlation": tc}

    def auxiliary_loss(self, name: str) -> torch.Tensor:
        if name != "discriminator":
            return super().auxiliary_loss(name)
        if self._last_latents is None:
            raise RuntimeError(
                "FactorVAE.auxiliary_loss('discriminator') needs the latents of a training_loss call; "
                "call training_loss(x) first"
            )
        if self._last_latents.shape[0] < 2:
            raise TrainingDataError("FactorVAE's discriminator needs a batch of at least 2 latents to permute")
        return factorvae_discriminator_loss(self.discriminator, self._last_latents, self._last_latents)
