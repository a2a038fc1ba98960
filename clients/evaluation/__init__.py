"""Evaluation utilities (numpy only at import; scikit-learn is imported lazily where needed)."""

from .disentanglement import dci, evaluate_all, irs, mig, modularity_explicitness, sap

__all__ = ["dci", "mig", "irs", "modularity_explicitness", "sap", "evaluate_all"]
