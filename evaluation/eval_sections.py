"""The sections of eval.json that `sae eval` builds from its passes: reconstruction, sampling, Fréchet distances and
disentanglement."""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np

from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.datasets import ImageSource
from sae.core.errors import ModelNotServedError
from sae.evaluation.disentanglement import dci, evaluate_all
from sae.evaluation.eval_config import EvalConfig
from sae.evaluation.eval_passes import BCE_EPS, Extractor, SamplePass, TestPass, read_in_order, subset_rows
from sae.evaluation.factor_features import FactorClassifierFeatures
from sae.evaluation.frechet import frechet_distance

PRIOR_NOT_APPLICABLE = (
    "not applicable: the served model set has no prior_sample model (SAE, AE and AdaAE have no "
    "prior; they make new samples by hybrid sampling only)"
)
PRIOR_SAMPLES = (
    "decoded draws of the model's prior through the served prior_sample model, as many as the hybrid "
    "samples and with the same seeds"
)


def reconstruction_section(passed: TestPass, source: ImageSource, data_label: str) -> dict[str, Any]:
    return {
        "data_label": data_label,
        "split": "test",
        "images": int(len(passed.bce)),
        "bce_per_image": float(passed.bce.mean()),
        "bce_per_pixel": float(passed.bce.mean() / np.prod(source.shape[1:])),
        "mse_per_pixel": float(passed.mse.mean()),
        "definition": "BCE: -sum over pixels and channels of x log p + (1-x) log(1-p), x = image/255, p = "
        f"reconstruction clipped to [{BCE_EPS}, 1-{BCE_EPS}], mean over images; MSE: mean squared "
        "error on the [0, 1] scale, mean over pixels, channels and images",
    }


def bank_num_variables(client: SAEClient, hybrid: SamplePass) -> int:
    """k of the bank's partition: the length of hybrid_sample's MASK input where served, else SOURCE_INDEX's width."""
    info = client.model_info("hybrid_sample")
    return int(info.inputs[wire.MASK].dims[0]) if wire.MASK in info.inputs else hybrid.source_width


def sampling_section(
    client: SAEClient, cfg: EvalConfig, hybrid: SamplePass, prior: SamplePass | None, num_variables: int
) -> dict[str, Any]:
    """How the generated sets were drawn (what eval.json's "sampling" records)."""
    try:
        bank_size = client.model_info("sampler").parameters.get("bank_size")
    except ModelNotServedError:
        bank_size = None
    return {
        "draw_mode": hybrid.draw_mode,
        "requested_draw": cfg.draw,
        "bank_size": int(bank_size) if bank_size else None,  # None: the sampler config records no bank_size
        "num_variables": num_variables,
        "hybrid_samples": hybrid.count,
        "prior_samples": prior.count if prior is not None else 0,
        "prior": PRIOR_SAMPLES if prior is not None else PRIOR_NOT_APPLICABLE,
        "seed": cfg.seed,
        "seeds": "part p of each set (at most the server's per-request limit) is seeded "
        "part_seed(seed, p); part 0 uses seed itself",
    }


def distances_section(
    extractors: dict[str, Extractor],
    data_label: str,
    inception,
    factor_record: dict,
    factor_names: tuple[str, ...],
    cfg: EvalConfig,
    has_prior: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "data_label": data_label,
        "reference": "real test images",
        "prior_samples": PRIOR_SAMPLES if has_prior else PRIOR_NOT_APPLICABLE,
    }
    for name, ex in extractors.items():
        reference = ex.reference
        if reference is None:  # the test pass gives every extractor its reference statistics
            raise ValueError(f"{name}: no reference statistics; run the test pass first")
        feature_dim = int(reference.whole.mean.size)
        entry: dict[str, Any] = {
            "data_label": data_label,
            "features": ex.extractor.identity,
            "feature_dim": feature_dim,
            "images": int(len(ex.rows)),
            "reference_data_sha1": ex.data_sha1,
            "reference_cached": ex.reference_cached,
            "reconstructions": frechet_distance(ex.reconstructions.stats(), reference.whole),
            "hybrid_samples": frechet_distance(ex.samples.stats(), reference.whole),
            "prior_samples": (
                frechet_distance(ex.prior_samples.stats(), reference.whole) if has_prior else PRIOR_NOT_APPLICABLE
            ),
            "real_vs_real_floor": reference.floor(),
            "floor_note": f"Fréchet distance between two halves ({len(ex.rows) // 2} images each) of the real "
            "reference images: what sampling alone gives",
        }
        if len(ex.rows) <= feature_dim:
            entry["small_sample_note"] = (
                f"only {len(ex.rows)} images for {feature_dim}-d features: the "
                "covariances are singular and the score is strongly biased upwards"
            )
        if name == "FID":
            entry["inception"] = inception.as_record()
            entry["preprocessing"] = "bilinear resize to 299x299 (align_corners=False), scaled to [-1, 1]"
        elif name == "FD-factor":
            entry |= factor_record
            classifier = cast(FactorClassifierFeatures, ex.extractor)  # setup_extractors' FD-factor network
            entry["classifier_heldout_accuracy"] = dict(zip(factor_names, classifier.heldout_accuracy))
        out[name] = entry
    if "FID" not in extractors:
        out["FID"] = {
            "status": "skipped: --fast (pass --fid-images N to compute it)"
            if cfg.fast and cfg.fid_images == 0
            else "skipped: fid_images is 0"
        }
    if "FD-factor" not in extractors:
        out["FD-factor"] = {"status": "not applicable: the dataset has no ground-truth factors to train on"}
    return out


def disentanglement_section(
    client: SAEClient,
    source: ImageSource,
    splits: dict[str, np.ndarray],
    cfg: EvalConfig,
    passed: TestPass,
    data_label: str,
) -> dict[str, Any]:
    if passed.factors is None:
        return {"status": "not applicable: the dataset has no ground-truth factors"}
    test_latents, factors_test = passed.latents, passed.factors
    train_rows = subset_rows(splits["train"], cfg.counts.train_codes, cfg.seed + 4)
    codes_train = np.concatenate(
        [client.encode(images) for images in read_in_order(source, train_rows, cfg.batch_size)]
    )
    factors_train = source.read_factors(train_rows)
    out: dict[str, Any] = {
        "data_label": data_label,
        "factors": list(source.factor_names),
        "train_codes": int(len(codes_train)),
        "test_codes": int(len(test_latents)),
    }
    start = time.perf_counter()
    main = evaluate_all(
        codes_train, factors_train, test_latents, factors_test, fast=cfg.fast, seed=cfg.seed, n_jobs=cfg.gbt_jobs
    )
    out["seconds_all_metrics"] = round(time.perf_counter() - start, 3)
    out["summary"] = main["summary"]
    out["metrics"] = {k: main[k] for k in ("mig", "irs", "modularity_explicitness", "sap")}
    lasso = (
        main["dci"] if cfg.fast else dci(codes_train, factors_train, test_latents, factors_test, "lasso", seed=cfg.seed)
    )
    out["dci_lasso"] = dict(
        lasso, label="DCI with Lasso (fast linear variant for tests/CI; not comparable with published numbers)"
    )
    out["dci_gbt"] = (
        {"status": "skipped: --fast (gradient-boosted trees take minutes)"}
        if cfg.fast
        else dict(main["dci"], label="DCI with gradient-boosted trees (the authors' setting)")
    )
    return out
