"""The built-in model kinds, one module each (its regulariser settings beside its model); importing this package
registers them all. A new kind is one module that registers itself with ``sae.training.models.registry.register_model``
(imported here to be built in, or anywhere before its configs are used)."""

from __future__ import annotations

from sae.training.model_config import ModelConfig
from sae.training.models.autoencoder import Autoencoder

# In the order of the paper; each registers itself on import.
from sae.training.models.zoo import adaae, ae, betatcvae, factorvae, sae, vae, vlae, wae  # noqa: F401


def build_model(cfg: ModelConfig) -> Autoencoder:
    """The model of any registered kind."""
    cfg.validate()
    return cfg.model_kind.model_class(cfg)
