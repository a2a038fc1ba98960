"""The report builder of `sae experiment`: cell files in a temporary folder -> REPORT.md, results.json, figures.

The cells come from a small factory whose default values follow the paper (every claim agrees); each test changes
the few numbers that make one claim agree, disagree or overlap, or removes cells, and reads the verdicts back from
REPORT.md and results.json.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sae.serving.experiment import figures
from sae.serving.experiment.aggregate import Spread
from sae.serving.experiment.cell_results import CellFileError
from sae.serving.experiment.claims import C5_UNUSED_SHARE, compare, combine, _comparison
from sae.serving.experiment.model_groups import MODEL_ORDER, WITH_PRIOR, model_label
from sae.serving.experiment.report import build_report

FACTORS = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
SEEDS = (0, 1, 2)
COMMAND = "sae experiment cpu-shapes3d --out out/exp"
# Values in the paper's direction: SAEs reconstruct best, unregularised beat regularised, SAE-12's hybrid FID is the
# lowest, hybrid beats prior, SAE-12 and VLAE-12 disentangle best.
MSE = {"sae12": 0.010, "sae3": 0.011, "adaae12": 0.012, "ae": 0.013, "vae": 0.020, "betavae": 0.022,
       "betatcvae": 0.024, "factorvae": 0.021, "wae": 0.019, "vlae12": 0.018}
FID_HYBRID = {"sae12": 30.0, "sae3": 40.0, "adaae12": 55.0, "ae": 60.0, "vae": 62.0, "betavae": 64.0,
              "betatcvae": 66.0, "factorvae": 68.0, "wae": 70.0, "vlae12": 50.0}
DISENTANGLE = {"sae12": 0.80, "vlae12": 0.75, "sae3": 0.50, "adaae12": 0.30, "ae": 0.20, "vae": 0.35,
               "betavae": 0.45, "betatcvae": 0.40, "factorvae": 0.42, "wae": 0.25}
HELDOUT = {"sae12": {"none": 50.0, "encoder": 40.0, "decoder": 20.0, "both": 18.0},
           "vae": {"none": 60.0, "encoder": 45.0, "decoder": 30.0, "both": 28.0},
           "betavae": {"none": 62.0, "encoder": 47.0, "decoder": 32.0, "both": 30.0}}
ARMS = {"no_ball": {"shape": [2]}, "extreme_orientations": {"orientation": [0, 1, 13, 14]}}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?"
SPREAD_CELL = re.compile(rf"^{NUMBER} ± {NUMBER}$")
CLAIM_LINE = re.compile(r"^- \*\*(C\d)\*\* .*\*\*Verdict: (.+)\*\*$")
VERDICT = re.compile(r"^(agrees|disagrees|inconclusive \(.+\))$")


@pytest.fixture
def draw_charts():
    """Asked for by the tests that draw the report's charts (see ``no_charts``)."""


@pytest.fixture(autouse=True)
def no_charts(request, monkeypatch):
    """Charts cost a second or more per report on a busy CPU; only the tests that ask for ``draw_charts`` draw them."""
    if "draw_charts" not in request.fixturenames:
        monkeypatch.setattr(figures, "charts_available", lambda: False)


def _per_seed(value, seed: int) -> float:
    """A list gives one value per seed; a number gets a 1% jitter per seed (so std is small but not 0)."""
    if isinstance(value, list):
        return float(value[seed])
    return float(value) * (1 + 0.01 * (seed - 1))


def sae12_importance(shape_dim: int = 0, orientation_dim: int = 1, unused: float = 0.001) -> list[list[float]]:
    """12 dims x 6 factors: shape and orientation in the given dims, hues and scale next, the last six nearly unused."""
    rows = [[unused] * 6 for _ in range(12)]
    rows[shape_dim][4] = 1.0
    rows[orientation_dim][5] = 1.0
    free = [d for d in range(12) if d not in (shape_dim, orientation_dim)]
    for factor, dim in zip((0, 1, 2, 3), free):
        rows[dim][factor] = 0.8
    return rows


def make_cell(model: str, seed: int, *, metrics: dict | None = None, importance: list | None = None,
              arm: str | None = None, heldout: dict | None = None) -> dict:
    """One cell file's content (schema 1); ``arm`` makes an extrapolation cell."""
    has_prior = model in WITH_PRIOR
    cell_id = f"{model}-s{seed}" + (f"-{arm}" if arm else "")
    cell = {
        "schema": 1, "grid": "cpu-shapes3d", "cell": cell_id, "kind": "extrapolation" if arm else "main",
        "model": model, "family": re.sub(r"\d+$", "", model), "has_prior": has_prior, "seed": seed,
        "dataset": {"kind": "shapes3d", "label": "procedural", "path": "data/shapes3d.h5", "images": 60000},
        "config": {"model": {"kind": model}}, "steps": 1500, "batch_size": 64,
        "commit": "abc1234" if seed < 2 else "def5678", "machine": "Test CPU, 2 cores", "torch": "2.13.0",
        "seconds": {"train": 100.0, "export": 10.0, "eval": 20.0}, "draw_mode": "per_variable",
        "metrics": None, "dci_importance": None, "factor_names": FACTORS, "variable_of_dim": None,
        "extrapolation": None,
        "thumbnails": {"traversals": f"thumbs/{cell_id}_traversals.png",
                       "hybrid_samples": f"thumbs/{cell_id}_hybrid.png",
                       "prior_samples": f"thumbs/{cell_id}_prior.png" if has_prior else None,
                       "reconstructions": f"thumbs/{cell_id}_recon.png"},
    }
    if arm:
        values = {**HELDOUT.get(model, HELDOUT["vae"]), **(heldout or {})}
        cell["extrapolation"] = {"arm": arm, "excluded": ARMS[arm], "pretrain_fraction": 0.8,
                                 "heldout_mse_x1000": {k: _per_seed(v, seed) for k, v in values.items()},
                                 "heldout_images": 512}
        return cell
    values = {"bce": MSE[model] * 10000, "mse": MSE[model], "fid_reconstruction": FID_HYBRID[model] / 2,
              "fid_hybrid": FID_HYBRID[model], "fid_prior": FID_HYBRID[model] * 1.5 if has_prior else None,
              "dci_disentanglement": DISENTANGLE[model], "dci_completeness": 0.5, "dci_informativeness": 0.6,
              "mig": DISENTANGLE[model] / 2, "irs": DISENTANGLE[model] * 0.9, "sap": 0.1, "modularity": 0.9,
              "explicitness": 0.95, **(metrics or {})}
    cell["metrics"] = {k: (None if v is None else _per_seed(v, seed)) for k, v in values.items()}
    cell["metrics"].update({"fid_images": 512, "dci_regressor": "gbt"})
    if model == "sae12":
        cell["dci_importance"] = importance[seed] if importance and isinstance(importance[0][0], list) else (
            importance or sae12_importance())
        cell["variable_of_dim"] = list(range(12))
    return cell


def write_grid(out_dir: Path, *, models=MODEL_ORDER, seeds=SEEDS, metrics: dict | None = None,
               importance: list | None = None, heldout: dict | None = None, arms=tuple(ARMS),
               arm_models=tuple(HELDOUT), plan: list[str] | None = None) -> Path:
    """Write a grid's cells and placeholder thumbnails.

    ``metrics`` maps a model, ``heldout`` an (arm, model) pair, to values that replace the defaults.
    """
    cells_dir = out_dir / "cells"
    cells_dir.mkdir(parents=True, exist_ok=True)
    cells = [make_cell(m, s, metrics=(metrics or {}).get(m), importance=importance) for m in models for s in seeds]
    cells += [make_cell(m, s, arm=a, heldout=(heldout or {}).get((a, m))) for a in arms for m in arm_models
              for s in seeds]
    for cell in cells:
        (cells_dir / f"{cell['cell']}.json").write_text(json.dumps(cell))
    thumbs = out_dir / "thumbs"
    thumbs.mkdir(exist_ok=True)
    for cell in cells:
        for path in cell["thumbnails"].values():
            if path:
                (out_dir / path).write_bytes(b"\x89PNG\r\n\x1a\n")
    if plan is not None:
        (out_dir / "grid.json").write_text(json.dumps({"name": "cpu-shapes3d", "doc": "A CPU-sized grid.",
                                                       "cells": plan, "sizing": "1500 steps, batch 64"}))
    return out_dir


def verdicts(report: Path) -> dict[str, str]:
    found = {}
    for line in report.read_text().splitlines():
        match = CLAIM_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def tables(report: Path, section: str) -> list[tuple[list[str], list[list[str]]]]:
    """The tables (header, rows) under the level-2 heading that starts with ``section``."""
    text = report.read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    found, current = [], None
    for line in body.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if current is None:
                current = (cells, [])
                found.append(current)
            elif not all(set(c) <= {"-", " "} for c in cells):
                current[1].append(cells)
        else:
            current = None
    return found


def build(tmp_path: Path, **grid) -> tuple[Path, dict]:
    write_grid(tmp_path, **grid)
    report = build_report(tmp_path, command=COMMAND, wall_seconds=1234.5)
    return report, json.loads((tmp_path / "results.json").read_text())


# --- the comparison rule -------------------------------------------------------------------------------------------

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
    assert COMMAND in text and "`abc1234` (32 cells)" in text and "`def5678` (16 cells)" in text
    assert "Test CPU, 2 cores" in text and "1234 s wall time" in text and "Comparison rule:" in text
    assert f"{48 * 130} s summed over the cells" in text
    assert "Missing cells" not in text
    assert results["wall_seconds"]["cells_total"] == pytest.approx(48 * 130)


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
                    assert column == "FID prior" and row[0] in {model_label(m) for m in MODEL_ORDER
                                                                 if m not in WITH_PRIOR}
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


@pytest.mark.parametrize("mse, expected", [
    ({"sae12": {"mse": 0.030}}, "disagrees"),  # SAE-12 worse than every hourglass model
    ({"sae3": {"mse": [0.010, 0.013, 0.016]}}, "inconclusive (spreads overlap)"),  # SAE-3 within AE's spread
    ({"ae": {"mse": 0.0195}}, "disagrees"),  # AE (unregularised) worse than VAE (mean 0.020) and VLAE-12
])
def test_c1_follows_the_rule(tmp_path, mse, expected):
    metrics = {m: {"mse": v["mse"], "bce": v["mse"] * 10000 if not isinstance(v["mse"], list)
                   else [x * 10000 for x in v["mse"]]} for m, v in mse.items()}
    report, _ = build(tmp_path, metrics=metrics)
    assert verdicts(report)["C1"] == expected


def test_c1_disagrees_on_bce_alone(tmp_path):
    report, results = build(tmp_path, metrics={"sae12": {"bce": 300.0}})
    assert verdicts(report)["C1"] == "disagrees"
    claim = next(c for c in results["claims"] if c["id"] == "C1")
    assert {c["metric"] for c in claim["comparisons"] if c["outcome"] == "disagrees"} == {"bce"}


@pytest.mark.parametrize("fid, expected", [
    ({"sae3": {"fid_hybrid": 20.0}}, "disagrees"),
    ({"sae3": {"fid_hybrid": [25.0, 30.0, 35.0]}}, "inconclusive (spreads overlap)"),
])
def test_c2_follows_the_rule(tmp_path, fid, expected):
    report, _ = build(tmp_path, metrics=fid)
    assert verdicts(report)["C2"] == expected


@pytest.mark.parametrize("fid, expected", [
    ({"wae": {"fid_prior": 50.0}}, "disagrees"),  # WAE's prior samples beat its hybrid samples (70)
    ({"vae": {"fid_prior": [55.0, 62.0, 69.0]}}, "inconclusive (spreads overlap)"),
])
def test_c3_follows_the_rule(tmp_path, fid, expected):
    report, _ = build(tmp_path, metrics=fid)
    assert verdicts(report)["C3"] == expected


@pytest.mark.parametrize("scores, expected", [
    ({"adaae12": {"mig": 0.5}}, "disagrees"),  # AdaAE-12 above SAE-12 (0.40) on MIG
    ({"betavae": {"irs": [0.55, 0.65, 0.75]}}, "inconclusive (spreads overlap)"),  # VLAE-12's IRS is 0.675
])
def test_c4_follows_the_rule(tmp_path, scores, expected):
    report, _ = build(tmp_path, metrics=scores)
    assert verdicts(report)["C4"] == expected


def test_c5_disagrees_when_shape_sits_in_the_last_variable_and_none_is_unused(tmp_path):
    report, results = build(tmp_path, importance=sae12_importance(shape_dim=11, unused=0.05))
    assert verdicts(report)["C5"] == "disagrees"
    claim = next(c for c in results["claims"] if c["id"] == "C5")
    assert "shape mostly in variable 12" in claim["numbers"]


def test_c5_seeds_that_split_are_inconclusive(tmp_path):
    per_seed = [sae12_importance(), sae12_importance(), sae12_importance(shape_dim=11, orientation_dim=10,
                                                                         unused=0.05)]
    report, _ = build(tmp_path, importance=per_seed)
    assert verdicts(report)["C5"].startswith("inconclusive (seeds split")


def test_c5_table_gives_each_variables_top_factor_and_share(tmp_path):
    report, results = build(tmp_path)
    header, rows = tables(report, "SAE-12")[0]
    assert len(rows) == 12
    assert [r[1] for r in rows[:6]] == ["shape", "orientation", "floor_hue", "wall_hue", "object_hue", "scale"]
    shares = [float(r[2]) for r in rows]
    assert sum(shares) == pytest.approx(100, abs=0.1)
    assert min(shares) < C5_UNUSED_SHARE * 100
    variables = results["c5_importance"]["variables"]
    assert [v["top_factor"] for v in variables] == [r[1] for r in rows]


@pytest.mark.parametrize("heldout, expected", [
    ({("no_ball", "vae"): {"encoder": 25.0}}, "disagrees"),  # encoder beats decoder (30) for VAE
    ({("extreme_orientations", "sae12"): {"decoder": 35.0}}, "disagrees"),  # SAE-12 worse than VAE after decoder
    ({("no_ball", "betavae"): {"encoder": [30.0, 40.0, 50.0], "decoder": [25.0, 32.0, 39.0]}},
     "inconclusive (spreads overlap)"),
])
def test_c6_follows_the_rule(tmp_path, heldout, expected):
    report, _ = build(tmp_path, heldout=heldout)
    assert verdicts(report)["C6"] == expected


def test_a_missing_model_makes_its_claims_inconclusive_and_names_it(tmp_path):
    models = [m for m in MODEL_ORDER if m != "vae"]
    report, _ = build(tmp_path, models=models, arm_models=("sae12", "betavae"))
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


def test_single_seed_says_the_verdicts_rest_on_one_seed(tmp_path):
    report, results = build(tmp_path, seeds=(0,))
    text = report.read_text()
    assert "**Single seed:**" in text and "std is 0" in text
    for line in text.splitlines():
        if CLAIM_LINE.match(line):
            assert "the verdict rests on one seed" in line, line
    assert all(c["single_seed"] for c in results["claims"])
    header, rows = tables(report, "Per model")[0]
    assert all(r[1] == "1" and r[3].endswith("± 0") for r in rows)


def test_missing_cells_are_listed_from_grid_json(tmp_path):
    planned = [f"{m}-s{s}" for m in MODEL_ORDER for s in SEEDS]
    planned += [f"{m}-s{s}-{a}" for a in ARMS for m in HELDOUT for s in SEEDS]
    report, results = build(tmp_path, models=[m for m in MODEL_ORDER if m != "factorvae"], seeds=SEEDS, plan=planned)
    text = report.read_text()
    section = text.split("## Missing cells", 1)[1]
    assert [line[3:-1] for line in section.splitlines() if line.startswith("- `")] == [
        "factorvae-s0", "factorvae-s1", "factorvae-s2"]
    assert results["missing_cells"] == ["factorvae-s0", "factorvae-s1", "factorvae-s2"]
    assert "A CPU-sized grid." in text and "Grid sizing: 1500 steps, batch 64" in text
    assert "45 of 48 planned present" in text


def test_a_prior_model_without_prior_fid_is_named_as_missing(tmp_path):
    write_grid(tmp_path, arms=())
    for path in (tmp_path / "cells").glob("wae-*.json"):
        cell = json.loads(path.read_text())
        cell["has_prior"], cell["metrics"]["fid_prior"] = False, None
        path.write_text(json.dumps(cell))
    report = build_report(tmp_path, command=COMMAND)
    assert verdicts(report)["C3"] == "inconclusive (missing: wae prior FID)"


def test_grid_json_alone_reports_every_cell_and_claim_as_missing(tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({"name": "cpu-shapes3d", "cells": ["sae12-s0", "vae-s0"]}))
    report = build_report(tmp_path, command=COMMAND)
    found = verdicts(report)
    assert all(v.startswith("inconclusive (missing: ") for v in found.values()), found
    assert "- `sae12-s0`\n- `vae-s0`" in report.read_text()
    assert "No main cells." in report.read_text()


def test_null_metrics_and_modes_not_run_are_shown_as_not_recorded_and_named_missing(tmp_path):
    write_grid(tmp_path)
    for path in (tmp_path / "cells").glob("*.json"):
        cell = json.loads(path.read_text())
        if cell["kind"] == "main" and cell["model"] == "vlae12":
            cell["metrics"]["mig"] = None  # e.g. the evaluation could not compute it
        if cell["kind"] == "main" and cell["model"] == "sae12" and cell["seed"] == 2:
            cell["metrics"]["fid_hybrid"] = None
        if cell["kind"] == "extrapolation" and cell["model"] == "vae":
            del cell["extrapolation"]["heldout_mse_x1000"]["encoder"]  # the arm ran without that mode
        path.write_text(json.dumps(cell))
    report = build_report(tmp_path, command=COMMAND)
    found = verdicts(report)
    assert found["C4"] == "inconclusive (missing: vlae12 MIG)"
    assert found["C6"] == "inconclusive (missing: vae encoder in extreme_orientations, vae encoder in no_ball)"
    assert found["C2"] == "agrees"  # two seeds of SAE-12's hybrid FID still decide it
    header, rows = tables(report, "Per model")[1]
    assert next(r for r in rows if r[0] == "VLAE-12")[header.index("MIG")] == "n/a"
    header, rows = tables(report, "Per model")[0]
    assert next(r for r in rows if r[0] == "SAE-12")[header.index("FID hybrid")].endswith("(n=2)")
    header, rows = tables(report, "Extrapolation")[0]
    assert next(r for r in rows if r[0] == "VAE")[header.index("encoder")] == "n/a"
    assert "n/a: not recorded" in report.read_text()


def test_traversals_of_the_first_seed_and_missing_thumbnails(tmp_path):
    write_grid(tmp_path)
    (tmp_path / "thumbs" / "sae3-s0_traversals.png").unlink()
    text = build_report(tmp_path, command=COMMAND).read_text()
    assert "![SAE-12 traversals, seed 0](thumbs/sae12-s0_traversals.png)" in text
    assert "![VLAE-12 traversals, seed 0](thumbs/vlae12-s0_traversals.png)" in text
    assert "(thumbnail `thumbs/sae3-s0_traversals.png` is missing)" in text
    assert "thumbs/betavae-s0_prior.png" in text and "thumbs/sae12-s1_traversals.png" not in text


def test_charts_are_written_and_linked(tmp_path, draw_charts):
    pytest.importorskip("matplotlib")
    report, results = build(tmp_path)
    paths = [f["path"] for f in results["figures"]]
    assert "figures/sae12_importance.png" in paths and "figures/extrapolation_no_ball.png" in paths
    for path in paths:
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({path})" in report.read_text()


# --- bad input -----------------------------------------------------------------------------------------------------

def _break_cell(tmp_path: Path, edit) -> Path:
    write_grid(tmp_path, models=("sae12", "ae"), arms=())
    path = tmp_path / "cells" / "ae-s1.json"
    cell = json.loads(path.read_text())
    edit(cell)
    path.write_text(json.dumps(cell))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(schema=2), "schema 2 is not supported"),
    (lambda c: c["metrics"].pop("mse"), "missing key 'metrics.mse'"),
    (lambda c: c["metrics"].update(bce="low"), "'metrics.bce' must be int or float"),
    (lambda c: c["metrics"].update(mig=float("nan")), "'metrics.mig' must be a finite number"),
    (lambda c: c["metrics"].update(fid_prior=12.0), "'fid_prior' must be null for a model without a prior"),
    (lambda c: c.update(kind="other"), "'kind' must be one of main, extrapolation"),
    (lambda c: c.update(cell="ae-s7"), "the file name says cell 'ae-s1'"),
])
def test_a_wrong_schema_cell_gives_one_error_naming_the_file(tmp_path, edit, message):
    path = _break_cell(tmp_path, edit)
    with pytest.raises(CellFileError, match=re.escape(str(path))) as error:
        build_report(tmp_path, command=COMMAND)
    assert message in str(error.value)
    assert not (tmp_path / "REPORT.md").exists()


def test_an_extrapolation_cell_with_an_unknown_fine_tune_mode_is_refused(tmp_path):
    write_grid(tmp_path, models=(), arm_models=("sae12",))
    path = tmp_path / "cells" / "sae12-s0-no_ball.json"
    cell = json.loads(path.read_text())
    assert cell["metrics"] is None
    cell["extrapolation"]["heldout_mse_x1000"]["sideways"] = 1.0
    path.write_text(json.dumps(cell))
    with pytest.raises(CellFileError, match=re.escape(f"{path}: unknown fine-tune mode(s) sideways")):
        build_report(tmp_path, command=COMMAND)


def test_a_corrupt_cell_file_gives_one_error_naming_the_file(tmp_path):
    write_grid(tmp_path, models=("sae12",), arms=())
    path = tmp_path / "cells" / "sae12-s1.json"
    path.write_text('{"schema": 1, "cell": ')
    with pytest.raises(CellFileError, match=re.escape(f"{path}: not valid JSON")):
        build_report(tmp_path, command=COMMAND)


def test_a_corrupt_grid_json_gives_an_error_naming_it(tmp_path):
    write_grid(tmp_path, models=("sae12",), arms=())
    (tmp_path / "grid.json").write_text(json.dumps({"cells": ["sae12-s0", 3]}))
    with pytest.raises(CellFileError, match=re.escape(f"{tmp_path / 'grid.json'}: 'cells' must list cell ids")):
        build_report(tmp_path, command=COMMAND)


def test_duplicate_cells_and_empty_folders_are_refused(tmp_path):
    write_grid(tmp_path, models=("sae12",), seeds=(0,), arms=())
    cell = json.loads((tmp_path / "cells" / "sae12-s0.json").read_text())
    cell["cell"] = "sae12-s0-again"
    (tmp_path / "cells" / "sae12-s0-again.json").write_text(json.dumps(cell))
    with pytest.raises(CellFileError, match="same model, seed and arm"):
        build_report(tmp_path, command=COMMAND)
    with pytest.raises(CellFileError, match="nothing to report"):
        build_report(tmp_path / "empty", command=COMMAND)


def test_the_report_modules_import_no_torch():
    code = ("import sys; import sae.serving.experiment.report, sae.serving.experiment.claims; "
            "assert 'torch' not in sys.modules, 'torch imported'; assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
