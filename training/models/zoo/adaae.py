"""AdaAE: the structural decoder with every Str-Tfm layer seeing the whole latent (the paper's ablation)."""

from __future__ import annotations

from sae.training.models.registry import register_model
from sae.training.models.zoo.sae import StructuralAutoencoder


@register_model("adaae")
class AdaAE(StructuralAutoencoder):
    """k Str-Tfm layers, all of the latent in each: no variable is tied to a layer, so none is drawn as a chunk."""

    chunked_latent = False
    whole_latent = True
