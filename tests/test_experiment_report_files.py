"""The report builder of `sae experiment` on incomplete and broken input: missing cells, seeds and metrics, figures
and charts, and cell files that are corrupt or of the wrong schema (cells from ``tests/helpers/report_cells.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.report_cells import (  # noqa: F401 (fixtures: pytest looks them up here)
    ARMS,
    CLAIM_LINE,
    COMMAND,
    HELDOUT,
    SEEDS,
    build,
    draw_charts,
    no_charts,
    tables,
    verdicts,
    write_grid,
)

from sae.experiment.cell_results import CellFileError
from sae.experiment.model_groups import MODEL_ORDER
from sae.experiment.report import build_report


def test_single_seed_says_the_verdicts_rest_on_one_seed(tmp_path):
    report, results = build(tmp_path, seeds=(0,))
    text = report.read_text()
    assert "**Single seed:**" in text and "std is 0" in text
    found = verdicts(report)
    for line in text.splitlines():
        match = CLAIM_LINE.match(line)
        if match and match.group(1) in ("C1", "C2", "C4", "C5"):  # spread rules, and C5's one importance matrix
            assert "the verdict rests on one seed" in line, line
    assert all(c["single_seed"] for c in results["claims"] if c["id"] in ("C1", "C2", "C4", "C5"))
    # paired rules need two paired seeds
    assert found["C3"] == "inconclusive (fewer than 2 paired seeds)"
    assert found["C6"] == "inconclusive (fewer than 2 paired seeds)"
    header, rows = tables(report, "Per model")[0]
    assert all(r[1] == "1" and r[3].endswith("± 0") for r in rows)


def test_missing_cells_are_listed_from_grid_json(tmp_path):
    planned = [f"{m}-s{s}" for m in MODEL_ORDER for s in SEEDS]
    planned += [f"{m}-s{s}-{a}" for a in ARMS for m in HELDOUT for s in SEEDS]
    report, results = build(tmp_path, models=[m for m in MODEL_ORDER if m != "factorvae"], seeds=SEEDS, plan=planned)
    text = report.read_text()
    section = text.split("## Missing cells", 1)[1]
    assert [line[3:-1] for line in section.splitlines() if line.startswith("- `")] == [
        "factorvae-s0",
        "factorvae-s1",
        "factorvae-s2",
    ]
    assert results["missing_cells"] == ["factorvae-s0", "factorvae-s1", "factorvae-s2"]
    assert "A CPU-sized grid." in text and "Grid sizing: 1500 steps, batch 64" in text
    assert "51 of 54 planned present" in text


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
    assert found["C4"] == "agrees"  # DCI decides; MIG counts by majority, and the IRS and SAE-12 MIG comparisons agree
    claim = next(c for c in json.loads((tmp_path / "results.json").read_text())["claims"] if c["id"] == "C4")
    assert "missing: vlae12 MIG" not in claim["parts"][1]["verdict"]
    assert sum(c["outcome"] == "missing" for c in claim["parts"][1]["comparisons"]) == 7
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


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(schema=2), "schema 2 is not supported"),
        (lambda c: c["metrics"].pop("mse"), "missing key 'metrics.mse'"),
        (lambda c: c["metrics"].update(bce="low"), "'metrics.bce' must be int or float"),
        (lambda c: c["metrics"].update(mig=float("nan")), "'metrics.mig' must be a finite number"),
        (lambda c: c["metrics"].update(fid_prior=12.0), "'fid_prior' must be null for a model without a prior"),
        (lambda c: c.update(kind="other"), "'kind' must be one of main, extrapolation"),
        (lambda c: c.update(cell="ae-s7"), "the file name says cell 'ae-s1'"),
        (lambda c: c["gate"].pop("floor_bce"), "missing key 'gate.floor_bce'"),
        (lambda c: c["gate"]["accuracy"].update(shape=float("inf")), "'gate.accuracy.shape' must be a finite number"),
        (lambda c: c.update(traversal_response=[1.0, -0.5]), "'traversal_response' must be a non-empty list"),
    ],
)
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


def test_an_in_distribution_control_with_an_unknown_fine_tune_mode_is_refused(tmp_path):
    write_grid(tmp_path, models=(), arm_models=("sae12",))
    path = tmp_path / "cells" / "sae12-s0-no_ball.json"
    cell = json.loads(path.read_text())
    cell["extrapolation"]["seen_mse_x1000"]["sideways"] = 1.0
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
    code = (
        "import sys; import sae.experiment.report, sae.experiment.claims; "
        "assert 'torch' not in sys.modules, 'torch imported'; assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
