"""AE: the hourglass autoencoder of the paper's baselines (notes, "Backbone"), trained on pixel BCE alone."""

from __future__ import annotations

from sae.training.models.autoencoder import Autoencoder
from sae.training.models.registry import register_model


@register_model("ae")
class HourglassAutoencoder(Autoencoder):
    """The base model as it is: MLP to the smallest map, then the conv stack."""
