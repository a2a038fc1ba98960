"""The gate on procedural 3D-Shapes: colour oracle, entropy floor, per-factor accuracy from codes, and claims about
models below the gate reading "not testable"."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.report_cells import write_grid

from sae.core.datasets.procedural import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    Shapes3DRenderer,
    factor_indices_from_flat,
    labels_from_factor_indices,
    subset_flat_indices,
)
from sae.experiment import gate
from sae.experiment.aggregate import summarise
from sae.experiment.cell_results import read_cells
from sae.experiment.claims import NOT_TESTABLE, evaluate_claims


@pytest.fixture(scope="module")
def procedural():
    """200 procedural test images (32×32 to keep the 480 ray casts cheap), their factors and the mean weights."""
    renderer = Shapes3DRenderer(image_size=32, supersample=1)
    idx = factor_indices_from_flat(subset_flat_indices(200, seed=3))
    weights = gate.mean_geometry_weights(renderer)
    return renderer.render(idx), idx, weights


def _line(model, bce, oracle=4459.0, floor=4130.0, accuracy=1.0):
    return gate.GateLine(model, bce, 0.001, oracle, 0.0093, floor, {name: accuracy for name in FACTOR_NAMES})


def test_the_oracle_is_the_mean_render_over_the_geometries_and_is_refused(procedural):
    images, idx, weights = procedural
    oracle = gate.colour_oracle_prediction(idx, weights)
    assert oracle.shape == images.shape and 0.0 <= oracle.min() and oracle.max() <= 1.0
    # labels give the same prediction as indices
    np.testing.assert_allclose(gate.colour_oracle_prediction(labels_from_factor_indices(idx), weights), oracle)
    # the mean of the rendered images over all 480 geometries, for one image's hues (up to the renderer's clipping
    # of bright highlights and its rounding to uint8)
    renderer = Shapes3DRenderer(image_size=32, supersample=1)
    geos = np.array(
        [
            [*idx[0, :3], s, sh, o]
            for s in range(FACTOR_SIZES[3])
            for sh in range(FACTOR_SIZES[4])
            for o in range(FACTOR_SIZES[5])
        ]
    )
    rendered_mean = renderer.render(geos).astype(np.float64).mean(axis=0) / 255.0
    assert np.abs(rendered_mean - oracle[0]).mean() < 0.003 and np.abs(rendered_mean - oracle[0]).max() < 0.06
    oracle_bce = gate.bce_per_image(images, oracle)
    floor = gate.entropy_floor(images)
    assert oracle_bce > floor
    line = gate.gate_line(
        "oracle",
        images,
        idx,
        oracle,
        np.zeros((100, 3)),
        idx[:100],
        np.zeros((100, 3)),
        idx[100:],
        weights=weights,
        max_iter=5,
    )
    assert line.bce == pytest.approx(line.oracle_bce) == pytest.approx(oracle_bce)
    assert line.mse == pytest.approx(line.oracle_mse) and line.floor_bce == pytest.approx(floor)
    assert not line.bce_passed and not line.passed


def test_the_targets_themselves_reach_the_floor_and_pass_the_bce_half(procedural):
    images, idx, weights = procedural
    perfect = images.astype(np.float64) / 255.0
    floor = gate.entropy_floor(images)
    assert gate.bce_per_image(images, perfect) == pytest.approx(floor)
    assert gate.mse_per_pixel(images, perfect) == 0.0
    blurred = np.clip(perfect + 0.05, 0, 1)
    assert gate.bce_per_image(images, blurred) > floor
    oracle_bce = gate.bce_per_image(images, gate.colour_oracle_prediction(idx, weights))
    line = gate.GateLine("perfect", floor, 0.0, oracle_bce, 0.01, floor, {n: 1.0 for n in FACTOR_NAMES})
    assert line.bce_passed and line.passed
    assert line.bce_threshold == pytest.approx(floor + 0.5 * (oracle_bce - floor))


def test_factor_codes_give_accuracy_one_and_noise_codes_chance_and_are_refused():
    rng = np.random.default_rng(0)
    idx = factor_indices_from_flat(rng.choice(480_000, size=1500, replace=False))
    train, test = idx[:1000], idx[1000:]
    exact = gate.factor_accuracy(train.astype(float), train, test.astype(float), test, max_iter=20)
    assert set(exact) == set(FACTOR_NAMES) and min(exact.values()) >= 0.99
    noise = gate.factor_accuracy(rng.normal(size=(1000, 12)), train, rng.normal(size=(500, 12)), test, max_iter=20)
    for name, size in zip(FACTOR_NAMES, FACTOR_SIZES):
        assert noise[name] < 1.0 / size + 0.12, (name, noise[name])
    line = gate.GateLine("noise", 4130.0, 0.0, 4459.0, 0.0093, 4130.0, noise)
    assert line.bce_passed and not line.geometry_in_codes and not line.passed


def test_the_accuracy_split_is_disjoint_and_sized():
    train, test = gate.accuracy_split()
    assert train.shape == (gate.TRAIN_CODES, 6) and test.shape == (gate.TEST_CODES, 6)
    flat = {tuple(r) for r in np.concatenate([train, test])}
    assert len(flat) == gate.TRAIN_CODES + gate.TEST_CODES
    small = gate.accuracy_split(50, 20, seed=1)
    assert small[0].shape == (50, 6) and small[1].shape == (20, 6)


def test_budget_and_claim_testable():
    passing, failing = _line("sae12", 4200.0), _line("vlae12", 4400.0)
    assert passing.passed and not failing.passed
    assert not _line("ae", 4200.0, accuracy=0.8).passed
    assert gate.budget_adequate([passing, _line("ae", 4200.0)])
    assert not gate.budget_adequate([passing, _line("ae", 4200.0, accuracy=0.8)])
    assert not gate.budget_adequate([passing])
    assert gate.claim_testable(["sae12"], [passing, failing]) == gate.TESTABLE
    assert (
        gate.claim_testable(["sae12", "vlae12"], [_line("sae12", 4400.0), failing])
        == "not testable (below the gate: sae12, vlae12)"
    )
    line = gate.GateLine.from_json(failing.to_json())
    assert line == failing and failing.to_json()["passed"] is False


def test_claims_about_models_below_the_gate_are_not_testable(tmp_path):
    summary = summarise(read_cells(write_grid(tmp_path) / "cells"))
    normal = {c.claim_id: str(c.verdict) for c in evaluate_claims(summary)}
    assert normal == {f"C{i}": "agrees" for i in range(1, 7)}
    # SAE-12 and AE pass, VLAE-12 does not: the claims that name VLAE-12 (C1, C3, C4, C6) are not testable
    gated = {
        c.claim_id: c
        for c in evaluate_claims(summary, [_line("sae12", 4200.0), _line("ae", 4200.0), _line("vlae12", 4400.0)])
    }
    for claim in ("C1", "C3", "C4", "C6"):
        assert str(gated[claim].verdict) == f"{NOT_TESTABLE} (below the gate: vlae12)", claim
        assert str(gated[claim].rule_verdict) == "agrees"  # what the rule gave, kept for the record
    assert all(str(gated[c].verdict) == "agrees" and gated[c].rule_verdict is None for c in ("C2", "C5"))
    below = {c.claim_id: c for c in evaluate_claims(summary, [_line("sae12", 4400.0), _line("vlae12", 4400.0)])}
    assert str(below["C2"].verdict) == "not testable (below the gate: sae12)"
    assert str(below["C4"].verdict) == "not testable (below the gate: sae12, vlae12)"
    assert below["C1"].to_json()["outcome"] == NOT_TESTABLE
    # the budget: AE below the gate makes every claim not testable, naming it
    budget = {
        c.claim_id: str(c.verdict)
        for c in evaluate_claims(summary, [_line("sae12", 4200.0), _line("ae", 4200.0, accuracy=0.5)])
    }
    assert budget == {f"C{i}": "not testable (below the gate: ae)" for i in range(1, 7)}
    passing = evaluate_claims(summary, [_line(m, 4200.0) for m in ("sae12", "ae", "vlae12")])
    assert {c.claim_id: str(c.verdict) for c in passing} == normal
