"""Autoencoders on the shared backbone: x -> encoder -> z -> decoder -> pixel logits."""
from __future__ import annotations

import torch
from torch import nn

from training.config import ModelConfig
from training.losses import bce_with_logits_loss
from training.models.backbone import Encoder, HourglassDecoder
from training.models.structural import StructuralDecoder


class Autoencoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg.backbone, cfg.latent_dim)
        if cfg.structured:
            self.decoder: nn.Module = StructuralDecoder(cfg.backbone, cfg.latent_dim, cfg.num_variables,
                                                        cfg.strtfm_hidden, whole_latent=cfg.kind == "adaae")
        else:
            self.decoder = HourglassDecoder(cfg.backbone, cfg.latent_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], NCHW -> latent vectors."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent vectors -> pixel logits (sigmoid gives the image)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective the trainer minimises, and its named terms for logging.

        Plain autoencoders (SAE, AdaAE, AE) minimise pixel BCE alone; regularised models add their own terms.
        """
        logits, _ = self(x)
        reconstruction = bce_with_logits_loss(logits.float(), x)
        return reconstruction, {"reconstruction": reconstruction}


def build_model(cfg: ModelConfig) -> Autoencoder:
    return Autoencoder(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
