"""`sae eval`: evaluate one served model set through the server; write eval.json, report.md and PNG figures.

What it measures (the paper's evaluation, section 4 and appendix):

* reconstruction BCE (summed over pixels, the training loss) and MSE on the test split, through ``reconstruct``;
* Fréchet distances of reconstructions, hybrid samples and (where the served set has ``prior_sample``: VAE family,
  WAE) prior samples to the real test images, under three feature extractors: ``FID`` (the FID InceptionV3; this
  path alone imports torch), ``FD-factor`` (a factor classifier trained here on the dataset's labels) and
  ``FD-randconv`` (a fixed random CNN). Sets without a prior (SAE, AE, AdaAE) record prior samples as not
  applicable. Prior and hybrid samples come in the same number and with the same seeds. Reference statistics of the
  real images are cached;
* disentanglement of the encoded test images against their ground-truth factors (DCI with gradient-boosted trees as
  the authors ran it, and the fast Lasso variant; MIG, IRS, modularity/explicitness, SAP);
* figures: hybrid samples, prior samples (where served), reconstructions, latent traversals and hybridised chunks.

``fast=True`` (tests and CI) uses few images, the Lasso DCI only, and skips FID unless ``fid_images`` is given.
Scores on procedural data carry the label "procedural": they are not comparable with the paper's numbers.

The pieces live beside this file: the configuration (``eval_config``), the passes over the server
(``eval_passes``), the sections of eval.json (``eval_sections``) and the figures (``eval_figures``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sae.clients.triton_client import SAEClient
from sae.core import wire
from sae.core.datasets import DatasetError, ImageSource, dataset_splits, open_dataset
from sae.evaluation.distances import ReferenceStatsCache
from sae.evaluation.eval_config import EvalConfig, default_stats_cache
from sae.evaluation.eval_figures import write_figures
from sae.evaluation.eval_passes import run_sample_pass, run_test_pass, setup_extractors, subset_rows
from sae.evaluation.eval_sections import (
    PRIOR_NOT_APPLICABLE,
    bank_num_variables,
    disentanglement_section,
    distances_section,
    reconstruction_section,
    sampling_section,
)
from sae.evaluation.figures import read_bank
from sae.evaluation.inception import resolve_inception

__all__ = ["EvalConfig", "evaluate", "summary_lines", "default_stats_cache", "is_procedural", "PRIOR_NOT_APPLICABLE"]


def is_procedural(source: ImageSource) -> bool:
    if Path(source.path).suffix.lower() not in (".h5", ".hdf5"):
        return False
    import h5py

    with h5py.File(source.path, "r") as f:
        return bool(f.attrs.get("procedural", False))


EVAL_STAGES = 7  # feature extractors, test pass, hybrid samples, prior samples (if any), distances, metrics, figures


class _Timer:
    """Seconds per stage; with a progress bar, one step per stage, the running stage as its description."""

    def __init__(self, bar=None) -> None:
        self.seconds: dict[str, float] = {}
        self.bar = bar

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                if timer.bar is not None:
                    timer.bar.set_description(name)
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(timer.seconds.get(name, 0.0) + time.perf_counter() - self.start, 3)
                if timer.bar is not None:
                    timer.bar.update(1)

        return _Span()


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation and write ``OUT/eval.json``, ``OUT/report.md`` and ``OUT/figures/*.png``."""
    from sae.evaluation.report import markdown_report

    cfg = config.resolved()
    cfg.validate()
    counts = cfg.counts
    inception = resolve_inception(cfg.inception) if counts.fid_images > 0 else None  # bad files fail before any work
    bank = read_bank(cfg.bank) if cfg.bank else None
    source = open_dataset(cfg.data)
    splits = dataset_splits(source, seed=0)
    if len(splits["test"]) < 2:
        raise DatasetError(f"{cfg.data}: the test split has {len(splits['test'])} images; evaluation needs at least 2")
    procedural = is_procedural(source)
    data_label = "procedural" if procedural else "real"
    if cfg.stats_cache is None:  # resolved() sets it
        raise ValueError("EvalConfig.stats_cache is not resolved")
    cache = ReferenceStatsCache(cfg.stats_cache)
    test_rows = subset_rows(splits["test"], counts.num_images, cfg.seed)
    from sae.core.progress_bar import progress_bar

    stages = progress_bar(EVAL_STAGES, "eval", unit="stage", enabled=cfg.progress)
    timer = _Timer(stages)
    result: dict[str, Any] = {
        "model": cfg.model,
        "url": cfg.url,
        "fast": cfg.fast,
        "seed": cfg.seed,
        "data": {
            "path": str(cfg.data),
            "label": data_label,
            "procedural": procedural,
            "images": len(source),
            "image_size": int(source.image_size),
            "factors": list(source.factor_names),
            "note": (
                "procedural 3D-Shapes made by this package: scores are labelled 'procedural' and are not "
                "comparable with the paper's numbers on the real dataset"
            )
            if procedural
            else "",
        },
    }
    with SAEClient(cfg.url, model=cfg.model, timeout_s=cfg.timeout_s) as client:
        client.wait_ready(timeout_s=min(cfg.timeout_s, 30.0), role=wire.RECONSTRUCT)
        factor_record: dict[str, Any] = {}
        with timer("setup_feature_extractors"):
            extractors = setup_extractors(source, splits, cfg, test_rows, inception, cache, factor_record)
        with timer("test_pass"):
            passed = run_test_pass(client, source, test_rows, cfg, extractors, cache)
        result["reconstruction"] = reconstruction_section(passed, source, data_label)
        with timer("hybrid_samples"):
            hybrid = run_sample_pass(
                lambda n, seed: client.sample(n, seed=seed, draw=cfg.draw),
                client.max_samples(),
                cfg,
                extractors,
                "samples",
            )
        prior = None
        if client.has_prior():
            with timer("prior_samples"):
                prior = run_sample_pass(
                    client.prior_sample, client.max_samples("prior_sample"), cfg, extractors, "prior_samples"
                )
        num_variables = bank_num_variables(client, hybrid)
        result["sampling"] = sampling_section(client, cfg, hybrid, prior, num_variables)
        with timer("frechet_distances"):
            result["distances"] = distances_section(
                extractors, data_label, inception, factor_record, source.factor_names, cfg, prior is not None
            )
        with timer("disentanglement"):
            result["disentanglement"] = disentanglement_section(client, source, splits, cfg, passed, data_label)
        with timer("figures"):
            figures_dir = cfg.out / "figures"
            figures_dir.mkdir(parents=True, exist_ok=True)
            result["figures"] = write_figures(client, figures_dir, cfg, hybrid, prior, passed, num_variables, bank)
    stages.close()
    result["seconds"] = timer.seconds | {"features": {name: round(ex.seconds, 3) for name, ex in extractors.items()}}
    (cfg.out / "eval.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (cfg.out / "report.md").write_text(markdown_report(result))
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few lines for the terminal; each distance under its own name, labelled with the data."""
    label = result["data"]["label"]
    rec = result["reconstruction"]
    lines = [
        f"reconstruction ({label}, {rec['images']} test images): BCE {rec['bce_per_image']:.1f} per image, "
        f"MSE {rec['mse_per_pixel']:.5f} per pixel"
    ]
    for name in ("FID", "FD-factor", "FD-randconv"):
        entry = result["distances"].get(name, {})
        if "status" in entry:
            lines.append(f"{name}: {entry['status']}")
        elif entry:
            prior = entry["prior_samples"]
            prior_text = f"prior samples {prior:.4g}, " if isinstance(prior, float) else ""
            lines.append(
                f"{name} ({label}, {entry['images']} images): reconstructions {entry['reconstructions']:.4g}, "
                f"hybrid samples {entry['hybrid_samples']:.4g}, {prior_text}real-vs-real floor "
                f"{entry['real_vs_real_floor']:.4g}"
            )
    sampling = result.get("sampling")
    if sampling:
        bank = f" from a bank of {sampling['bank_size']}" if sampling.get("bank_size") else ""
        prior = (
            f"{sampling['prior_samples']} prior samples"
            if sampling["prior_samples"]
            else f"prior samples {sampling['prior']}"
        )
        lines.append(
            f"sampling: {sampling['hybrid_samples']} hybrid samples, {sampling['draw_mode']} draw{bank}; {prior}"
        )
    dis = result["disentanglement"]
    if "summary" in dis:
        s = dis["summary"]
        lines.append(
            f"disentanglement ({label}): DCI-{s['dci_regressor']} D {s['dci_disentanglement']:.3f} "
            f"C {s['dci_completeness']:.3f}, MIG {s['mig']:.3f}, SAP {s['sap']:.3f}"
        )
    return lines
