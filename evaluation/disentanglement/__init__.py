"""Disentanglement metrics written from the papers' definitions.

Every metric takes latent codes as a float array ``[N, D]`` and the ground-truth factors as an integer-coded
array ``[N, K]`` (one class index per factor, e.g. 3D-Shapes ``floor_hue`` as 0..9) and returns a plain dict of
Python floats, ints, strings and (nested) lists, so the result can be passed straight to ``json.dumps``.

The definitions follow the papers and, where the papers leave a choice open, disentanglement_lib
(Locatello et al., ICML 2019, ``disentanglement_lib/evaluation/metrics``), which is what the SAE authors ran
(Leeb et al., ICLR 2023: 10,000 training and 5,000 test points; DCI with gradient-boosted trees with scikit-learn
defaults, MIG with 20-bin histograms, IRS with a 0.99 quantile). Each docstring states the exact definition used and
where it deviates from disentanglement_lib (only for degenerate inputs such as constant factors). A factor that takes
a single value in the training factors (RFD's shape and size) is skipped by every metric: results list the factor
columns used (``factors_used``; per-factor values follow that order) and the ``skipped_factors``; MIG keeps one
entry per factor, None where skipped.

Only numpy is imported at module level; scikit-learn (and joblib, which ships with it) are imported inside the
functions that need them, so ``import clients`` works without them. Install them with the ``eval`` extra.

Functions: :func:`dci`, :func:`mig`, :func:`irs`, :func:`modularity_explicitness`, :func:`sap`,
:func:`evaluate_all`.

The metrics live one family a module beside this file (``dci_metric``, ``mig_metric``, ``irs_metric``,
``modularity_metric``, ``sap_metric``, all of them together in ``all_metrics``); the input checks in ``inputs`` and
the histograms and information measures in ``information``. Every name is importable from here.
"""

from .all_metrics import evaluate_all
from .dci_metric import dci
from .information import discrete_entropy, discrete_mutual_info, histogram_discretize
from .inputs import MetricInputError
from .irs_metric import irs
from .mig_metric import mig
from .modularity_metric import modularity_explicitness
from .sap_metric import sap

__all__ = [
    "dci",
    "mig",
    "irs",
    "modularity_explicitness",
    "sap",
    "evaluate_all",
    "histogram_discretize",
    "discrete_mutual_info",
    "discrete_entropy",
    "MetricInputError",
]
