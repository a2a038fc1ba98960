"""The base of every model kind: x -> encoder -> z -> decoder -> pixel logits, on the shared backbone.

The contract the trainer, the exporter and the bank rely on:

* ``preprocess(images)``: uint8 NHWC pixels -> the encoder's input, the one conversion that the trainer, the bank and
  the exported encoder graph all run;
* ``cfg: ModelConfig``; ``encode(x) -> [B, D]`` the deterministic code (posterior mean for variational models);
  ``decode(z) -> logits``;
* ``training_loss(x) -> (loss, terms)``: the objective and its named terms for logging;
* ``auxiliary_modules() -> {name: module}`` trained by their own optimiser through ``auxiliary_loss(name)``, called
  right after the main step (only FactorVAE has one);
* the capabilities below, as class attributes; a kind with ``has_prior`` defines
  ``prior_sample(n, generator=None) -> [n, D]`` (``sae.training.models.prior``).

The base is an hourglass autoencoder trained on pixel BCE alone; kinds override ``_build_encoder``,
``_build_decoder`` and ``training_loss`` (``training/models/zoo/``).
"""

from __future__ import annotations

import torch
from torch import nn

from sae.core.wire import UINT8_SCALE
from sae.training.losses import bce_with_logits_loss
from sae.training.model_config import ModelConfig
from sae.training.models.backbone import Encoder, HourglassDecoder


class Autoencoder(nn.Module):
    # Capabilities of the kind (sae.training.models.registry.ModelKind reads them; the configs ask it).
    has_prior = False  # prior_sample(n, generator) draws codes from the model's prior
    variational = False  # posterior(x) gives mean and log-variance; encode is the mean
    structured = False  # the decoder is the structural one (Str-Tfm layers)
    places_variables = False  # the decoder places cfg.num_variables variables in its slots (k must divide the latent)
    chunked_latent = False  # hybrid sampling draws the k chunks as variables; otherwise one variable per dimension
    reads_ladder = False  # cfg.ladder shapes the model
    min_batch_size = 1  # a regulariser estimated over the batch needs at least this many images

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = self._build_encoder()
        self.decoder = self._build_decoder()

    def _build_encoder(self) -> nn.Module:
        return Encoder(self.cfg.backbone, self.cfg.latent_dim)

    def _build_decoder(self) -> nn.Module:
        return HourglassDecoder(self.cfg.backbone, self.cfg.latent_dim)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC pixels -> float NCHW intensities in [0, 1] (``sae.core.wire.to_float_images`` in torch); the
        permuted view is channels_last in memory."""
        return images.permute(0, 3, 1, 2).float().div(UINT8_SCALE)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], NCHW -> latent vectors."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent vectors -> pixel logits (sigmoid gives the image)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic reconstruction logits and code (no sampling, whatever the model)."""
        z = self.encode(x)
        return self.decode(z), z

    def reconstruction_loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return bce_with_logits_loss(logits.float(), x)

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The objective the trainer minimises, and its named terms for logging.

        Plain autoencoders (SAE, AdaAE, AE) minimise pixel BCE alone; regularised models add their own terms.
        """
        logits, _ = self(x)
        reconstruction = self.reconstruction_loss(logits, x)
        return reconstruction, {"reconstruction": reconstruction}

    def auxiliary_modules(self) -> dict[str, nn.Module]:
        """Sub-modules with their own optimiser (not trained by the main loss); none for most models."""
        return {}

    def main_parameters(self) -> list[nn.Parameter]:
        """Every parameter but those of ``auxiliary_modules()``: what the main optimiser should hold."""
        auxiliary = {id(p) for module in self.auxiliary_modules().values() for p in module.parameters()}
        return [p for p in self.parameters() if id(p) not in auxiliary]

    def auxiliary_loss(self, name: str) -> torch.Tensor:
        raise ValueError(
            f"model kind {self.cfg.kind!r} has no auxiliary module {name!r} "
            f"(it has: {sorted(self.auxiliary_modules()) or 'none'})"
        )


def count_parameters(model: nn.Module, auxiliary: bool = True) -> int:
    """All parameters; ``auxiliary=False`` leaves out auxiliary modules (FactorVAE's discriminator)."""
    params = model.parameters() if auxiliary or not isinstance(model, Autoencoder) else model.main_parameters()
    return sum(p.numel() for p in params)
