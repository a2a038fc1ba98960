"""SAE-k, the Structural Autoencoder (Leeb et al., 2023): the structural decoder, pixel BCE alone."""

from __future__ import annotations

from torch import nn

from sae.training.models.autoencoder import Autoencoder
from sae.training.models.registry import register_model
from sae.training.models.structural import StructuralDecoder


@register_model("sae")
class StructuralAutoencoder(Autoencoder):
    """The latent's k chunks enter the decoder through their own Str-Tfm layers; hybrid sampling draws chunks."""

    structured = True
    places_variables = True
    chunked_latent = True
    whole_latent = False  # each Str-Tfm sees its own chunk

    def _build_decoder(self) -> nn.Module:
        cfg = self.cfg
        return StructuralDecoder(
            cfg.backbone, cfg.latent_dim, cfg.num_variables, cfg.strtfm_hidden, whole_latent=self.whole_latent
        )
