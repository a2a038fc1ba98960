"""The paper's models by their short names in the grids, and the groups its claims compare.

Groups (Leeb et al. 2023): the VAE family has a prior; the "hourglass" baselines share the plain MLP decoder; the
unregularised models train on the reconstruction loss alone.
"""

from __future__ import annotations

__all__ = [
    "MODEL_ORDER",
    "MODEL_LABELS",
    "WITH_PRIOR",
    "HOURGLASS",
    "UNREGULARISED",
    "REGULARISED",
    "model_label",
    "model_sort_key",
]

MODEL_ORDER = ("sae12", "sae3", "adaae12", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae12")
MODEL_LABELS = {
    "sae12": "SAE-12",
    "sae3": "SAE-3",
    "adaae12": "AdaAE-12",
    "ae": "AE",
    "vae": "VAE",
    "betavae": "β-VAE",
    "betatcvae": "β-TCVAE",
    "factorvae": "FactorVAE",
    "wae": "WAE",
    "vlae12": "VLAE-12",
}
WITH_PRIOR = ("vae", "betavae", "betatcvae", "factorvae", "wae", "vlae12")
HOURGLASS = ("ae", "vae", "betavae", "betatcvae", "factorvae", "wae")
UNREGULARISED = ("sae12", "sae3", "adaae12", "ae")
REGULARISED = ("vae", "betavae", "betatcvae", "factorvae", "wae", "vlae12")


def model_label(model: str) -> str:
    """The paper's name of a model (its short name when the paper has none)."""
    return MODEL_LABELS.get(model, model)


def model_sort_key(model: str) -> tuple[int, str]:
    """The paper's order first, then any other model by name."""
    return (MODEL_ORDER.index(model), "") if model in MODEL_ORDER else (len(MODEL_ORDER), model)
