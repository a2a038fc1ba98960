"""Evaluation: disentanglement metrics, Fréchet distances and the `sae eval` harness.

Only numpy is imported here. scikit-learn and scipy are imported inside the functions that need them, torch only by the
FID path (:mod:`sae.evaluation.inception`), and the harness (:mod:`sae.evaluation.harness`, which talks to the
server) is imported by whoever runs it.
"""

from .disentanglement import dci, evaluate_all, irs, mig, modularity_explicitness, sap
from .frechet import FeatureMoments, GaussianStats, frechet_distance

__all__ = [
    "dci",
    "mig",
    "irs",
    "modularity_explicitness",
    "sap",
    "evaluate_all",
    "frechet_distance",
    "GaussianStats",
    "FeatureMoments",
]
