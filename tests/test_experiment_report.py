"""The report builder of `sae experiment`, claim by claim: cell files in a temporary folder -> REPORT.md and
results.json, with the verdict rules of C1-C6.

The cells come from the factory in ``tests/helpers/report_cells.py`` (every claim agrees by default); each test changes
the
few numbers that change a verdict, or removes cells, and reads the verdicts back. The rules themselves, claim by
claim, are tested in ``tests/test_claims.py``.
"""

from __future__ import annotations

import pytest
from helpers.report_cells import (  # noqa: F401 (fixtures: pytest looks them up here)
    COMMAND,
    SPREAD_CELL,
    VERDICT,
    build,
    draw_charts,
    no_charts,
    sae12_importance,
    tables,
    verdicts,
)

from sae.experiment.aggregate import Spread
from sae.experiment.comparisons import _comparison, combine, compare
from sae.experiment.model_groups import MODEL_ORDER, WITH_PRIOR, model_label


def test_compare_needs_a_gap_wider_than_both_spreads():
    assert compare(Spread(1.0, 0.1, 3), Spread(2.0, 0.1, 3), lower_is_better=True) == "agrees"
    assert compare(Spread(2.0, 0.1, 3), Spread(1.0, 0.1, 3), lower_is_better=True) == "disagrees"
    assert compare(Spread(1.0, 0.5, 3), Spread(1.8, 0.5, 3), lower_is_better=True) == "overlap"
    assert compare(Spread(2.0, 0.1, 3), Spread(1.0, 0.1, 3), lower_is_better=False) == "agrees"
    assert compare(Spread(1.0, 0.0, 1), Spread(1.0, 0.0, 1), lower_is_better=True) == "overlap"


def test_combine_one_disagreement_wins_and_missing_inputs_are_named():
    agree = _comparison("A", Spread(1, 0, 2), "B", Spread(2, 0, 2), "mse", True)
    overlap = _comparison("A", Spread(1, 1, 2), "C", Spread(2, 1, 2), "mse", True)
    disagree = _comparison("A", Spread(3, 0, 2), "D", Spread(2, 0, 2), "mse", True)
    missing = _comparison("A", Spread(1, 0, 2), "VAE", None, "mse", True, ["vae"])
    assert str(combine([agree, agree])) == "agrees"
    assert str(combine([agree, overlap])) == "inconclusive (spreads overlap)"
    assert str(combine([agree, missing])) == "inconclusive (missing: vae)"
    assert str(combine([agree, missing, disagree])) == "disagrees"


def test_spread_is_sample_std_and_zero_for_one_seed():
    spread = Spread.of([1.0, 2.0, 3.0])
    assert (spread.mean, spread.std, spread.n) == (2.0, 1.0, 3)
    assert Spread.of([5.0]).std == 0.0


# --- the report ----------------------------------------------------------------------------------------------------


def test_paper_direction_grid_agrees_on_every_claim(tmp_path):
    report, results = build(tmp_path)
    assert verdicts(report) == {f"C{i}": "agrees" for i in range(1, 7)}
    assert report == tmp_path / "REPORT.md"
    text = report.read_text()
    assert "Procedural data" in text and "not the paper's" in text
    assert COMMAND in text and "`abc1234` (36 cells)" in text and "`def5678` (18 cells)" in text
    assert "Test CPU, 2 cores" in text and "1234 s wall time" in text and "(spread rule)" in text
    assert "(paired rule" in text and "The paper: “" in text
    assert f"{54 * 130} s summed over the cells" in text
    assert "Missing cells" not in text
    assert results["wall_seconds"]["cells_total"] == pytest.approx(54 * 130)


def test_every_table_cell_is_a_number_and_dash_only_for_models_without_prior(tmp_path):
    report, _ = build(tmp_path)
    per_model = tables(report, "Per model")
    assert len(per_model) == 2
    dashes = 0
    for header, rows in per_model + tables(report, "Extrapolation"):
        assert rows
        for row in rows:
            assert row[1] == "3"
            for column, cell in zip(header[2:], row[2:]):
                if cell == "—":
                    assert column == "FID prior" and row[0] in {
                        model_label(m) for m in MODEL_ORDER if m not in WITH_PRIOR
                    }
                    dashes += 1
                else:
                    assert SPREAD_CELL.match(cell), (column, cell)
    assert dashes == len(set(MODEL_ORDER) - set(WITH_PRIOR))
    assert "—: no prior" in report.read_text()
    extrapolation = tables(report, "Extrapolation")
    assert [h[2:] for h, _ in extrapolation] == [["none", "encoder", "decoder", "both"]] * 2


def test_mean_and_std_in_the_table_are_those_of_the_seeds(tmp_path):
    report, results = build(tmp_path, metrics={"sae12": {"mse": [0.01, 0.02, 0.03]}})
    header, rows = tables(report, "Per model")[0]
    sae12 = next(r for r in rows if r[0] == "SAE-12")
    assert sae12[header.index("MSE per pixel")] == "0.02 ± 0.01"
    assert sae12[header.index("BCE per image")] == "100 ± 1"  # 100 with a 1% jitter per seed: 99, 100, 101
    assert results["models"]["sae12"]["metrics"]["mse"] == pytest.approx({"mean": 0.02, "std": 0.01, "n": 3})


def test_every_claim_line_has_one_of_the_three_verdicts(tmp_path):
    report, _ = build(tmp_path, models=("sae12", "ae", "vae"), metrics={"ae": {"mse": [0.008, 0.011, 0.02]}})
    found = verdicts(report)
    assert sorted(found) == [f"C{i}" for i in range(1, 7)]
    assert all(VERDICT.match(v) for v in found.values()), found


def test_c5_table_gives_each_variables_top_factor_and_share(tmp_path):
    report, results = build(tmp_path)
    header, rows = tables(report, "SAE-12")[0]
    assert len(rows) == 12
    assert [r[1] for r in rows[:6]] == ["shape", "orientation", "floor_hue", "wall_hue", "object_hue", "scale"]
    shares = [float(r[2]) for r in rows]
    assert sum(shares) == pytest.approx(100, abs=0.1)
    assert min(shares) < 1  # the factory's nearly unused variables
    variables = results["c5_importance"]["variables"]
    assert [v["top_factor"] for v in variables] == [r[1] for r in rows]


def test_a_missing_model_makes_its_claims_inconclusive_and_names_it(tmp_path):
    models = [m for m in MODEL_ORDER if m != "vae"]
    report, _ = build(tmp_path, models=models, arm_models=("sae12", "betavae", "vlae12"))
    found = verdicts(report)
    for claim in ("C1", "C2", "C3", "C4"):
        assert found[claim] == "inconclusive (missing: vae)", claim
    assert found["C5"] == "agrees"
    assert found["C6"] == "inconclusive (missing: vae in extreme_orientations, vae in no_ball)"


def test_missing_extrapolation_arm_and_sae12_importance(tmp_path):
    report, _ = build(tmp_path, models=[m for m in MODEL_ORDER if m != "sae12"], arms=("no_ball",))
    found = verdicts(report)
    assert found["C5"] == "inconclusive (missing: sae12)"
    assert "missing: sae12" in found["C2"]
    assert "extreme_orientations" in found["C6"] and found["C6"].startswith("inconclusive (missing:")


def test_a_disagreement_is_kept_when_other_inputs_are_missing(tmp_path):
    report, _ = build(tmp_path, models=[m for m in MODEL_ORDER if m != "wae"], metrics={"sae12": {"mse": 0.03}})
    assert verdicts(report)["C1"] == "disagrees"


def test_results_json_round_trips_the_verdicts(tmp_path):
    report, results = build(tmp_path, metrics={"sae12": {"mse": 0.030}}, models=[m for m in MODEL_ORDER if m != "wae"])
    from_json = {c["id"]: c["verdict"] for c in results["claims"]}
    assert from_json == verdicts(report)
    assert from_json["C1"] == "disagrees" and from_json["C3"] == "inconclusive (missing: wae)"
    assert results["grid"] == "cpu-shapes3d" and results["command"] == COMMAND
    assert set(results["models"]) == set(MODEL_ORDER) - {"wae"}
    assert results["models"]["ae"]["metrics"]["fid_prior"] is None
    assert results["extrapolation"]["no_ball"]["sae12"]["heldout_mse_x1000"]["decoder"]["n"] == 3
    assert results["extrapolation"]["no_ball"]["sae12"]["seeds"] == [0, 1, 2]
