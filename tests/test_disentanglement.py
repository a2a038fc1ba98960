"""Disentanglement metrics on synthetic codes whose answer is known.

Factors: 5 factors with 4, 6, 8, 10 and 5 values, sampled uniformly. Three kinds of codes:

- aligned: a permuted, rescaled (sign flips included) copy of the factors plus small noise -> every metric near its
  maximum;
- rotated: a random rotation of the standardised factors plus small noise -> the same information, but entangled;
- noise: standard normal codes independent of the factors -> informativeness at chance.

Bounds are set from measurements with margin (values measured when written are in the comments). The rotated bounds
hold for every one of 20 rotation seeds tried (lasso DCI-D max 0.24, MIG max 0.36, GBT DCI-D max 0.32), not only
the seed used here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sklearn  # noqa: F401  (the eval extra; `make` installs it, so a missing one is a failure)

from sae.evaluation import disentanglement as dm
from sae.evaluation.disentanglement.dci_metric import _dci_scores

SIZES = (4, 6, 8, 10, 5)
NOISE = 0.05


def _factors(n: int, seed: int, sizes=SIZES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, s, n) for s in sizes], axis=1)


def _make_cases(n_train: int, n_test: int, seed: int = 0) -> dict:
    ftr, fte = _factors(n_train, seed + 1), _factors(n_test, seed + 2)
    k = ftr.shape[1]
    rng = np.random.default_rng(seed + 3)
    perm = rng.permutation(k)
    scale = rng.uniform(0.5, 3.0, k) * rng.choice([-1.0, 1.0], k)
    q, _ = np.linalg.qr(rng.standard_normal((k, k)))
    mean, std = ftr.mean(axis=0), ftr.std(axis=0)

    def aligned(f):
        return f[:, perm] * scale + NOISE * rng.standard_normal(f.shape)

    def rotated(f):
        return ((f - mean) / std) @ q + NOISE * rng.standard_normal(f.shape)

    return {
        "factors": (ftr, fte),
        "aligned": (aligned(ftr), aligned(fte)),
        "rotated": (rotated(ftr), rotated(fte)),
        "noise": (rng.standard_normal(ftr.shape), rng.standard_normal(fte.shape)),
    }


@pytest.fixture(scope="module")
def cases():
    return _make_cases(3000, 1500)


@pytest.fixture(scope="module")
def fast_results(cases):
    ftr, fte = cases["factors"]
    out = {}
    for name in ("aligned", "rotated", "noise"):
        ctr, cte = cases[name]
        out[name] = dm.evaluate_all(ctr, ftr, cte, fte, fast=True)
    return out


# ------------------------------------------------------------------------------------------------ fast metrics


def test_aligned_codes_score_near_maximum(fast_results):
    r = fast_results["aligned"]
    assert r["dci"]["regressor"] == "lasso"
    assert r["dci"]["informativeness_kind"] == "r2"
    assert r["dci"]["disentanglement"] > 0.9  # measured 1.000
    assert r["dci"]["completeness"] > 0.9  # 1.000
    assert r["dci"]["informativeness_test"] > 0.95  # 0.999
    assert r["mig"]["mig"] > 0.8  # 0.994
    assert r["irs"]["irs"] > 0.9  # 0.974
    assert r["modularity_explicitness"]["modularity"] > 0.9  # 1.000
    assert r["modularity_explicitness"]["explicitness_test"] > 0.9  # 0.980
    assert r["sap"]["sap"] > 0.2  # 0.372
    # the importance matrix recovers the permutation: each code's largest importance is its own factor
    imp = np.array(r["dci"]["importance_matrix"])
    assert imp.shape == (5, 5)
    assert sorted(imp.argmax(axis=1).tolist()) == list(range(5))


def test_rotated_codes_are_informative_but_entangled(fast_results):
    a, r = fast_results["aligned"], fast_results["rotated"]
    # the rotation loses no information ...
    assert r["dci"]["informativeness_test"] > 0.95  # 0.997
    # ... but spreads every factor over every code
    assert r["dci"]["disentanglement"] < 0.4  # measured 0.14 (max 0.24 over 20 rotations)
    assert r["dci"]["completeness"] < 0.4
    assert r["mig"]["mig"] < 0.4  # 0.22 (max 0.36 over 20 rotations)
    assert r["dci"]["disentanglement"] < a["dci"]["disentanglement"] - 0.5
    assert r["mig"]["mig"] < a["mig"]["mig"] - 0.5
    assert r["irs"]["irs"] < a["irs"]["irs"] - 0.2  # 0.47 vs 0.974
    assert r["sap"]["sap"] < a["sap"]["sap"]


def test_noise_codes_are_at_chance(fast_results):
    r = fast_results["noise"]
    assert abs(r["dci"]["informativeness_test"]) < 0.02  # R^2 -0.003
    assert r["mig"]["mig"] < 0.02  # 0.001
    assert abs(r["modularity_explicitness"]["explicitness_test"] - 0.5) < 0.05  # ROC-AUC 0.497
    assert r["sap"]["sap"] < 0.03  # 0.005


def test_results_are_json_serialisable(fast_results):
    text = json.dumps(fast_results, allow_nan=False)
    back = json.loads(text)
    assert back["aligned"]["summary"]["dci_regressor"] == "lasso"
    assert set(back["aligned"]["summary"]) >= {"dci_disentanglement", "mig", "irs", "modularity", "sap"}


# ------------------------------------------------------------------------------------------------ GBT DCI


@pytest.fixture(scope="module")
def small_cases():
    return _make_cases(400, 200, seed=10)


@pytest.mark.slow
def test_gbt_dci_aligned_vs_rotated(small_cases):
    ftr, fte = small_cases["factors"]
    a = dm.dci(small_cases["aligned"][0], ftr, small_cases["aligned"][1], fte, regressor="gbt")
    r = dm.dci(small_cases["rotated"][0], ftr, small_cases["rotated"][1], fte, regressor="gbt")
    assert a["regressor"] == "gbt" and a["informativeness_kind"] == "accuracy"
    assert a["disentanglement"] > 0.9  # 1.000
    assert a["completeness"] > 0.9  # 1.000
    assert a["informativeness_test"] > 0.95  # 1.000
    assert r["disentanglement"] < 0.45  # 0.11 (max 0.32 over 20 rotations)
    assert r["disentanglement"] < a["disentanglement"] - 0.4
    imp = np.array(a["importance_matrix"])
    np.testing.assert_allclose(imp.sum(axis=0), 1.0, atol=1e-9)  # impurity importances sum to 1 per factor


@pytest.mark.slow
def test_gbt_dci_noise_accuracy_is_chance(small_cases):
    ftr = small_cases["factors"][0][:, [0, 4]]  # 4 and 5 values: fewer trees per boosting stage, faster
    ctr = small_cases["noise"][0]
    fte = _factors(3000, 99, sizes=(4, 5))  # a large test split (prediction is cheap) keeps sampling noise small
    cte = np.random.default_rng(98).standard_normal((3000, ctr.shape[1]))
    r = dm.dci(ctr, ftr, cte, fte, regressor="gbt")
    chance = r["informativeness_chance_test"]
    assert 0.15 < chance < 0.35  # majority-class accuracy, about (1/4 + 1/5) / 2
    assert abs(r["informativeness_test"] - chance) < 0.05
    assert r["informativeness_train"] > r["informativeness_test"] + 0.3  # trees memorise noise


# ------------------------------------------------------------------------------------------------ definitions


def test_dci_scores_on_known_importance_matrices():
    eye = _dci_scores(np.eye(4))
    assert eye["disentanglement"] == pytest.approx(1.0, abs=1e-6)
    assert eye["completeness"] == pytest.approx(1.0, abs=1e-6)
    flat = _dci_scores(np.ones((4, 4)))
    assert flat["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert flat["completeness"] == pytest.approx(0.0, abs=1e-6)
    # two codes both describe factor 0 only: disentangled codes, incomplete factor
    dup = _dci_scores(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert dup["disentanglement"] == pytest.approx(1.0, abs=1e-6)
    assert dup["completeness"] == pytest.approx(0.0, abs=1e-6)
    # one code describes two factors equally: D = 0 for it
    mix = _dci_scores(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert mix["disentanglement"] == pytest.approx(0.0, abs=1e-6)
    assert mix["completeness"] == pytest.approx(1.0, abs=1e-6)


def test_mutual_information_matches_sklearn():
    from sklearn.metrics import mutual_info_score

    rng = np.random.default_rng(0)
    f = _factors(2000, 0)
    codes = f[:, [1, 0, 2]] + rng.standard_normal((2000, 3))
    disc = dm.histogram_discretize(codes, 20)
    assert disc.min() >= 1 and disc.max() <= 20
    assert all(len(np.unique(disc[:, j])) > 10 for j in range(3))
    m = dm.discrete_mutual_info(disc, f)
    for d in range(3):
        for k in range(f.shape[1]):
            assert m[d, k] == pytest.approx(mutual_info_score(f[:, k], disc[:, d]), abs=1e-12)
    h = dm.discrete_entropy(f)
    assert h[3] == pytest.approx(mutual_info_score(f[:, 3], f[:, 3]), abs=1e-12)


def test_mig_gap_vanishes_for_duplicated_code():
    f = _factors(3000, 5, sizes=(6, 8))
    codes = np.stack([f[:, 0], f[:, 0], f[:, 1]], axis=1).astype(float)
    r = dm.mig(codes, f)
    # factor 0 is captured equally by two codes -> gap exactly 0; factor 1 by exactly one code -> gap 1 minus the
    # plug-in MI bias of the independent codes (about (6-1)(8-1)/(2N) nats, measured 0.9975)
    assert r["mig_per_factor"][0] == pytest.approx(0.0, abs=1e-9)
    assert r["mig_per_factor"][1] == pytest.approx(1.0, abs=0.01)
    assert r["mig"] == pytest.approx(0.5, abs=0.005)


def test_sap_gap_vanishes_for_duplicated_code():
    f = _factors(1000, 6, sizes=(2, 3))
    fte = _factors(500, 7, sizes=(2, 3))
    c = np.stack([f[:, 0], f[:, 0], f[:, 1]], axis=1) * 1.0
    cte = np.stack([fte[:, 0], fte[:, 0], fte[:, 1]], axis=1) * 1.0
    r = dm.sap(c, f, cte, fte)
    assert r["sap_per_factor"][0] == pytest.approx(0.0, abs=1e-9)
    assert r["sap_per_factor"][1] > 0.3


def test_irs_prefers_aligned_parents(cases):
    ftr, _ = cases["factors"]
    ctr, _ = cases["aligned"]
    r = dm.irs(ctr, ftr)
    assert r["num_active_dims"] == 5
    # each code's parent is the factor it copies
    assert sorted(r["parents"]) == list(range(5))
    # a constant code is dropped, the score is unchanged
    with_const = np.concatenate([ctr, np.ones((len(ctr), 1))], axis=1)
    r2 = dm.irs(with_const, ftr)
    assert r2["num_active_dims"] == 5
    assert r2["irs"] == pytest.approx(r["irs"], abs=1e-12)


# ------------------------------------------------------------------------------------------------ validation


def test_mismatched_rows_name_the_argument():
    f = _factors(100, 0)
    c = np.zeros((99, 3))
    with pytest.raises(ValueError, match="factors"):
        dm.mig(c, f)
    with pytest.raises(ValueError, match="codes_test"):
        dm.dci(np.zeros((100, 3)) + np.arange(3), f, c, f, regressor="lasso")


def test_nan_codes_name_the_argument():
    f = _factors(100, 0)
    c = np.random.default_rng(0).standard_normal((100, 3))
    c[5, 1] = np.nan
    with pytest.raises(ValueError, match="codes.*NaN"):
        dm.mig(c, f)
    with pytest.raises(ValueError, match="codes_train"):
        dm.sap(c, f, np.zeros((100, 3)), f)
    with pytest.raises(ValueError, match="codes_test"):
        dm.modularity_explicitness(np.zeros((100, 3)), f, c, f)


def test_one_dimensional_inputs_name_the_argument():
    f = _factors(100, 0)
    c = np.zeros((100, 3))
    with pytest.raises(ValueError, match="codes must be a 2-D"):
        dm.mig(np.zeros(100), f)
    with pytest.raises(ValueError, match="factors must be a 2-D"):
        dm.irs(c, f[:, 0])
    with pytest.raises(ValueError, match="factors_test must be a 2-D"):
        dm.dci(c, f, c, f[:, 0], regressor="lasso")


def test_other_bad_inputs():
    f = _factors(100, 0)
    c = np.zeros((100, 3))
    with pytest.raises(ValueError, match="factors_train.*integer"):
        dm.dci(c, f + 0.5, c, f)
    with pytest.raises(ValueError, match="codes_test has 2 columns"):
        dm.sap(c, f, c[:, :2], f)
    with pytest.raises(ValueError, match="regressor"):
        dm.dci(c, f, c, f, regressor="forest")


def test_package_imports_without_sklearn_scipy_or_torch():
    root = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "for m in ('sklearn', 'scipy', 'torch', 'joblib'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np\n"
        "from sae import clients\n"
        "from sae.evaluation import mig, irs\n"
        "f = np.random.default_rng(0).integers(0, 4, (500, 2))\n"
        "print(round(mig(f * 1.0, f)['mig'], 6), round(irs(f * 1.0, f)['irs'], 6))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    mig_val, irs_val = map(float, out.stdout.split())
    # codes = factors: MIG is 1 up to the plug-in MI bias of the other (independent) code, IRS is exactly 1
    assert mig_val == pytest.approx(1.0, abs=0.02) and irs_val == pytest.approx(1.0)
