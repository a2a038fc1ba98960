"""Every disentanglement metric on one pair of splits, with the headline numbers in one flat summary."""

from __future__ import annotations

from typing import Any

from .dci_metric import dci
from .inputs import _check_train_test
from .irs_metric import irs
from .mig_metric import mig
from .modularity_metric import modularity_explicitness
from .sap_metric import sap


def evaluate_all(
    codes_train: Any,
    factors_train: Any,
    codes_test: Any,
    factors_test: Any,
    fast: bool = False,
    seed: int = 0,
    n_jobs: int | None = None,
    num_bins: int = 20,
    diff_quantile: float = 0.99,
) -> dict[str, Any]:
    """Every metric of this module, as the SAE authors evaluated (10k train / 5k test points in the paper).

    DCI, modularity/explicitness and SAP use both splits; MIG and IRS use the training split (disentanglement_lib
    computes them on ``num_train`` points). ``fast=True`` replaces the gradient-boosted-tree DCI by the Lasso variant
    (``dci["regressor"]`` says which one ran). ``summary`` collects the headline numbers in one flat dict.
    """
    ctr, ftr, cte, fte = _check_train_test(codes_train, factors_train, codes_test, factors_test)
    res_dci = dci(ctr, ftr, cte, fte, regressor="lasso" if fast else "gbt", seed=seed, n_jobs=n_jobs)
    res_mig = mig(ctr, ftr, num_bins=num_bins)
    res_irs = irs(ctr, ftr, diff_quantile=diff_quantile)
    res_mod = modularity_explicitness(ctr, ftr, cte, fte, num_bins=num_bins, seed=seed)
    res_sap = sap(ctr, ftr, cte, fte, seed=seed)
    summary = {
        "dci_regressor": res_dci["regressor"],
        "dci_disentanglement": res_dci["disentanglement"],
        "dci_completeness": res_dci["completeness"],
        "dci_informativeness_test": res_dci["informativeness_test"],
        "mig": res_mig["mig"],
        "irs": res_irs["irs"],
        "modularity": res_mod["modularity"],
        "explicitness_test": res_mod["explicitness_test"],
        "sap": res_sap["sap"],
    }
    return {
        "fast": bool(fast),
        "num_train": int(ctr.shape[0]),
        "num_test": int(cte.shape[0]),
        "skipped_factors": res_dci["skipped_factors"],
        "summary": summary,
        "dci": res_dci,
        "mig": res_mig,
        "irs": res_irs,
        "modularity_explicitness": res_mod,
        "sap": res_sap,
    }
