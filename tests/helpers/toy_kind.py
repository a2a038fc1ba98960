"""A model kind that is not built in, in one file as a new kind would be: a variational encoder on the structural
decoder (a prior to sample from *and* a chunked latent), with its own regulariser settings. Importing this module
registers it as ``toyvsae``; ``tests/test_toy_kind.py`` does so at test time."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sae.training.losses import gaussian_kl
from sae.training.models.registry import RegulariserConfig, register_model
from sae.training.models.structural import StructuralDecoder
from sae.training.models.zoo.vae import VariationalAutoencoder

KIND = "toyvsae"


@dataclass(frozen=True)
class ToyConfig(RegulariserConfig):
    """``BCE + kl_weight · KL``."""

    kl_weight: float = 0.5


@register_model(KIND, regulariser=ToyConfig())
class ToyVariationalSAE(VariationalAutoencoder):
    structured = True
    places_variables = True
    chunked_latent = True

    def _build_decoder(self) -> nn.Module:
        cfg = self.cfg
        return StructuralDecoder(cfg.backbone, cfg.latent_dim, cfg.num_variables, cfg.strtfm_hidden)

    def regulariser_terms(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor):
        reg: ToyConfig = self.cfg.regulariser
        kl = gaussian_kl(mu, logvar)
        return reg.kl_weight * kl, {"kl": kl}
