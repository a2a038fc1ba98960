"""The claim rules C1-C6 on synthetic cells: for each claim, a grid where it agrees, one where it disagrees, one where
it is inconclusive and one where it is not testable (its models below the gate); plus the paired and approximate
rules, and the report's gate lines.

The cells come from ``tests/helpers/report_cells.py``: by default every claim agrees and every model passes the gate.
"""

from __future__ import annotations

import json

import pytest
from helpers.report_cells import FACTORS, build, sae12_importance, verdicts, write_grid

from sae.experiment.aggregate import summarise
from sae.experiment.cell_results import read_cells
from sae.experiment.claims import NOT_TESTABLE, evaluate_claims
from sae.experiment.claims_latents import mean_position
from sae.experiment.comparisons import AGREES, C6_TOLERANCE, DISAGREES, compare_paired
from sae.experiment.gate import GateLine
from sae.experiment.model_groups import MODEL_ORDER
from sae.experiment.report import build_report


def evaluate(tmp_path, gate_lines=None, **grid) -> dict:
    """The claims on a synthetic grid, by id."""
    summary = summarise(read_cells(write_grid(tmp_path, **grid) / "cells"))
    return {c.claim_id: c for c in evaluate_claims(summary, gate_lines)}


def verdict(tmp_path, claim: str, **grid) -> str:
    return str(evaluate(tmp_path, **grid)[claim].verdict)


def part(result, prefix: str) -> str:
    return str(next(p.verdict for p in result.parts if p.name.startswith(prefix)))


def line(model: str, passed: bool) -> GateLine:
    return GateLine(
        model,
        4200.0 if passed else 4450.0,
        0.004,
        4459.0,
        0.0093,
        4130.0,
        {f: 0.95 if passed else 0.3 for f in FACTORS},
    )


PASSING = [line(m, True) for m in ("sae12", "ae", "vlae12")]


# --- the rules' building blocks ------------------------------------------------------------------------------------


def test_paired_rule_needs_every_seed_and_two_of_them():
    assert compare_paired([(0, 1.0, 2.0), (1, 1.5, 1.6)], lower_is_better=True) == AGREES
    assert compare_paired([(0, 3.0, 2.0), (1, 1.7, 1.6)], lower_is_better=True) == DISAGREES
    assert compare_paired([(0, 1.0, 2.0), (1, 1.7, 1.6)], lower_is_better=True) == "seeds split"
    assert compare_paired([(0, 1.0, 2.0)], lower_is_better=True) == "too few paired seeds"
    assert compare_paired([(0, 2.0, 1.0), (1, 2.0, 1.5)], lower_is_better=False) == AGREES


def test_mean_position_weights_each_variable_by_its_importance():
    shares = [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    assert mean_position(shares, ["a", "b"], ["a"]) == 1.0
    assert mean_position(shares, ["a", "b"], ["b"]) == 2.5
    assert mean_position(shares, ["a", "b"], ["a", "b"]) == pytest.approx(2.0)


def test_every_claim_quotes_the_paper():
    found = evaluate_claims(summarise([]))
    assert all(c.quote.startswith("“") for c in found)
    assert "VLAE" in found[0].quote and "AdaAE does not disentangle" in found[3].quote


# --- C1 ------------------------------------------------------------------------------------------------------------


def _mse(values: dict) -> dict:
    """The same change on MSE and BCE (BCE = MSE x 10,000, as the factory's defaults)."""
    scale = lambda v: [x * 10000 for x in v] if isinstance(v, list) else v * 10000  # noqa: E731
    return {m: {"mse": v, "bce": scale(v)} for m, v in values.items()}


def test_c1_agrees_and_ae_below_vlae12_is_no_disagreement(tmp_path):
    assert verdict(tmp_path / "a", "C1") == "agrees"
    # AE (unregularised) reconstructs worse than VLAE-12: the paper speaks of a tendency, not of every pair
    assert verdict(tmp_path / "b", "C1", metrics=_mse({"ae": 0.0195})) == "agrees"


@pytest.mark.parametrize(
    "values, failing",
    [
        ({"sae12": 0.030}, ["(a)", "(b)"]),  # SAE-12 worse than the hourglass baselines, AE among them
        ({"vlae12": 0.025}, ["(b)"]),  # VLAE-12 worse than VAE (0.020)
        (
            {"sae3": 0.05, "adaae12": 0.05, "wae": 0.05},
            ["(c)"],
        ),  # the unregularised group's mean above the VAE family's
    ],
)
def test_c1_disagrees_part_by_part(tmp_path, values, failing):
    result = evaluate(tmp_path, metrics=_mse(values))["C1"]
    assert str(result.verdict) == "disagrees"
    assert [p.name[:3] for p in result.parts if p.verdict.outcome == DISAGREES] == failing


def test_c1_inconclusive_on_overlap_and_on_a_missing_model(tmp_path):
    assert (
        verdict(tmp_path / "a", "C1", metrics=_mse({"sae12": [0.008, 0.013, 0.018]}))
        == "inconclusive (spreads overlap)"
    )
    assert verdict(tmp_path / "b", "C1", models=[m for m in MODEL_ORDER if m != "vae"]) == "inconclusive (missing: vae)"


def test_c1_not_testable_below_the_gate(tmp_path):
    result = evaluate(tmp_path, [line("sae12", True), line("ae", True), line("vlae12", False)])["C1"]
    assert str(result.verdict) == f"{NOT_TESTABLE} (below the gate: vlae12)"
    assert str(result.rule_verdict) == "agrees"


# --- C2 ------------------------------------------------------------------------------------------------------------


def test_c2_agrees_and_sae3_is_no_competitor(tmp_path):
    assert verdict(tmp_path / "a", "C2") == "agrees"
    assert verdict(tmp_path / "b", "C2", metrics={"sae3": {"fid_hybrid": 20.0}}) == "agrees"


def test_c2_disagrees_inconclusive_and_not_testable(tmp_path):
    assert verdict(tmp_path / "a", "C2", metrics={"vlae12": {"fid_hybrid": 20.0}}) == "disagrees"
    assert (
        verdict(tmp_path / "b", "C2", metrics={"vlae12": {"fid_hybrid": [25.0, 30.0, 35.0]}})
        == "inconclusive (spreads overlap)"
    )
    assert (
        str(evaluate(tmp_path / "c", [line("sae12", False)])["C2"].verdict) == f"{NOT_TESTABLE} (below the gate: sae12)"
    )


# --- C3 ------------------------------------------------------------------------------------------------------------


def test_c3_is_paired_by_seed(tmp_path):
    assert verdict(tmp_path / "a", "C3") == "agrees"
    # VAE's hybrid FID (61.38, 62, 62.62) is below its prior FID on every seed, though the spreads overlap
    result = evaluate(tmp_path / "b", metrics={"vae": {"fid_prior": [62.5, 63.0, 63.5]}})["C3"]
    assert str(result.verdict) == "agrees"
    vae = next(c for c in result.comparisons if c.a_label == "VAE hybrid")
    assert vae.test == "paired" and [p[0] for p in vae.pairs] == [0, 1, 2]


def test_c3_disagrees_inconclusive_and_not_testable(tmp_path):
    assert verdict(tmp_path / "a", "C3", metrics={"wae": {"fid_prior": 50.0}}) == "disagrees"
    assert (
        verdict(tmp_path / "b", "C3", metrics={"vae": {"fid_prior": [55.0, 70.0, 60.0]}})
        == "inconclusive (seeds split)"
    )
    assert verdict(tmp_path / "c", "C3", seeds=(0,)) == "inconclusive (fewer than 2 paired seeds)"
    assert (
        str(evaluate(tmp_path / "d", [line("sae12", True), line("vlae12", False)])["C3"].verdict)
        == f"{NOT_TESTABLE} (below the gate: vlae12)"
    )


# --- C4 ------------------------------------------------------------------------------------------------------------


def test_c4_agrees_and_sae3_is_no_baseline(tmp_path):
    assert verdict(tmp_path / "a", "C4") == "agrees"
    assert verdict(tmp_path / "b", "C4", metrics={"sae3": {"dci_disentanglement": 0.95}}) == "agrees"


def test_c4_mig_and_irs_count_by_majority(tmp_path):
    # AdaAE-12 above SAE-12 and VLAE-12 on MIG: 2 of the 28 MIG/IRS comparisons disagree, no majority against
    result = evaluate(tmp_path / "a", metrics={"adaae12": {"mig": 0.5}})["C4"]
    assert str(result.verdict) == "agrees" and part(result, "MIG") == "agrees"
    # every baseline above both on MIG and IRS: a majority against
    above = {m: {"mig": 0.9, "irs": 0.95} for m in ("ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "adaae12")}
    result = evaluate(tmp_path / "b", metrics=above)["C4"]
    assert str(result.verdict) == "disagrees" and part(result, "MIG") == "disagrees"
    assert part(result, "DCI") == "agrees"


@pytest.mark.parametrize(
    "scores, failing",
    [
        ({"betavae": {"dci_disentanglement": 0.9}}, "DCI"),  # a baseline above SAE-12 and VLAE-12 on DCI
        ({"adaae12": {"dci_disentanglement": 0.6}}, "AdaAE"),  # AdaAE-12 above every hourglass baseline
    ],
)
def test_c4_disagrees(tmp_path, scores, failing):
    result = evaluate(tmp_path, metrics=scores)["C4"]
    assert str(result.verdict) == "disagrees" and part(result, failing) == "disagrees"


def test_c4_inconclusive_and_not_testable(tmp_path):
    assert (
        verdict(tmp_path / "a", "C4", metrics={"betavae": {"dci_disentanglement": [0.6, 0.75, 0.9]}})
        == "inconclusive (spreads overlap)"
    )
    assert (
        str(evaluate(tmp_path / "b", [line("sae12", False), line("vlae12", False)])["C4"].verdict)
        == f"{NOT_TESTABLE} (below the gate: sae12, vlae12)"
    )


# --- C5 ------------------------------------------------------------------------------------------------------------


def test_c5_agrees_whatever_the_unused_variables(tmp_path):
    result = evaluate(tmp_path / "a")["C5"]
    assert str(result.verdict) == "agrees"
    assert any("Unused variables: not judged" in d for d in result.details)
    # no nearly unused variable: the side remark is reported, not required
    assert verdict(tmp_path / "b", "C5", importance=sae12_importance(unused=0.05)) == "agrees"


def test_c5_reports_unused_variables_from_the_traversal_response(tmp_path):
    response = [[1.0] * 10 + [0.001, 0.002]] * 3
    result = evaluate(tmp_path, traversal_response={"sae12": response})["C5"]
    assert str(result.verdict) == "agrees"
    assert [d for d in result.details if d.startswith("Unused variables, seed 0")] == [
        "Unused variables, seed 0 (decoder traversal response under 2% of the total): 11, 12. Reported, not required."
    ]


def test_c5_disagrees_when_the_hues_come_first(tmp_path):
    result = evaluate(tmp_path, importance=sae12_importance(shape_dim=11, orientation_dim=10))["C5"]
    assert str(result.verdict) == "disagrees"
    assert "seed 0: shape and orientation at 11.44, hues at 2.07 (fails)" in result.numbers


def test_c5_inconclusive_and_not_testable(tmp_path):
    split = [sae12_importance(), sae12_importance(), sae12_importance(shape_dim=11, orientation_dim=10)]
    assert (
        verdict(tmp_path / "a", "C5", importance=split) == "inconclusive (seeds split: the rule holds for 2 of 3 seeds)"
    )
    assert (
        verdict(tmp_path / "b", "C5", models=[m for m in MODEL_ORDER if m != "sae12"])
        == "inconclusive (missing: sae12)"
    )
    assert (
        str(evaluate(tmp_path / "c", [line("sae12", False)])["C5"].verdict) == f"{NOT_TESTABLE} (below the gate: sae12)"
    )


# --- C6 ------------------------------------------------------------------------------------------------------------


def test_c6_agrees_with_vlae12_and_the_control(tmp_path):
    result = evaluate(tmp_path)["C6"]
    assert str(result.verdict) == "agrees"
    assert [str(p.verdict) for p in result.parts] == ["agrees"] * 4
    assert any(c.b_label == "VLAE-12 decoder [no_ball]" for c in result.comparisons)


@pytest.mark.parametrize(
    "heldout, failing",
    [
        ({("no_ball", "vae"): {"encoder": 25.0}}, "decoder-only beats"),  # encoder beats decoder (30) for VAE
        ({("no_ball", "sae12"): {"both": 10.0}}, "decoder-only ≈"),  # both far better than decoder-only (20)
        ({("extreme_orientations", "vlae12"): {"decoder": 15.0, "both": 15.0}}, "SAE-12 beats"),  # VLAE-12 beats SAE-12
    ],
)
def test_c6_disagrees(tmp_path, heldout, failing):
    result = evaluate(tmp_path, heldout=heldout)["C6"]
    assert str(result.verdict) == "disagrees" and part(result, failing) == "disagrees"


def test_c6_decoder_within_the_tolerance_of_both(tmp_path):
    inside = 1 + C6_TOLERANCE * 0.9
    result = evaluate(tmp_path, heldout={("no_ball", "vae"): {"decoder": 28.0 * inside}})["C6"]
    assert part(result, "decoder-only ≈") == "agrees"


def test_c6_the_control_is_part_of_the_claim(tmp_path):
    # without the in-distribution control the claim cannot agree, and says what is missing
    assert verdict(tmp_path / "a", "C6", seen=False) == "inconclusive (missing: in-distribution control)"
    # the decoder's advantage is no larger on held-out values than on seen ones
    seen = {("no_ball", "sae12"): {"encoder": 40.0, "decoder": 10.0}}
    result = evaluate(tmp_path / "b", seen=seen)["C6"]
    assert str(result.verdict) == "disagrees" and part(result, "in-distribution") == "disagrees"


def test_c6_inconclusive_and_not_testable(tmp_path):
    split = {("no_ball", "betavae"): {"encoder": [30.0, 40.0, 50.0], "decoder": [35.0, 32.0, 29.0]}}
    assert verdict(tmp_path / "a", "C6", heldout=split) == "inconclusive (seeds split)"
    assert (
        verdict(tmp_path / "b", "C6", arm_models=("sae12", "vae", "betavae"))
        == "inconclusive (missing: vlae12 in extreme_orientations, vlae12 in no_ball)"
    )
    assert (
        str(evaluate(tmp_path / "c", [line("sae12", True), line("ae", True), line("vlae12", False)])["C6"].verdict)
        == f"{NOT_TESTABLE} (below the gate: vlae12)"
    )


# --- the gate in the report ----------------------------------------------------------------------------------------


def test_the_report_shows_each_models_gate_line_and_gates_the_claims(tmp_path):
    report, results = build(tmp_path / "a", gate={"vlae12": {"bce": 4400.0}})
    text = report.read_text()
    assert "## The gate" in text and "| VLAE-12 | 3 | measured |" in text and "Budget adequate: yes" in text
    found = verdicts(report)
    assert found["C4"] == "not testable (below the gate: vlae12)" and found["C2"] == "agrees"
    assert "The rule on these numbers, for the record (not a test of the claim): agrees." in text
    gate = {g["model"]: g for g in results["gate"]}
    assert gate["vlae12"]["passed"] is False and gate["sae12"]["passed"] is True
    assert json.dumps(results["claims"])  # serialisable with the rule verdicts


def test_procedural_cells_without_gate_numbers_are_not_taken_as_tested(tmp_path):
    report, results = build(tmp_path, gate=False)
    text = report.read_text()
    assert "the gate was not measured for them" in text and "not measured |" in text
    assert "Budget adequate: no" in text and "are not tested by this run" in text
    assert set(verdicts(report).values()) == {
        "not testable (below the gate: sae12, vlae12, ae)",
        "not testable (below the gate: sae12, ae)",
    }
    assert {g["source"] for g in results["gate"]} == {"BCE only"}


def test_other_data_without_gate_numbers_follows_the_rules(tmp_path):
    report, _ = build(tmp_path, gate=False, dataset_label="3dshapes.h5")
    assert "the gate was not measured for these cells" in report.read_text()
    assert set(verdicts(report).values()) == {"agrees"}


def test_a_gate_missing_on_one_seed_does_not_pass(tmp_path):
    write_grid(tmp_path)
    path = tmp_path / "cells" / "ae-s1.json"
    cell = json.loads(path.read_text())
    del cell["gate"]
    path.write_text(json.dumps(cell))
    report = build_report(tmp_path, command="sae experiment test").read_text()
    assert "| AE | 2 | measured (not every seed) |" in report
    assert "Budget adequate: no" in report
