"""`sae experiment` end to end on tiny grids: train, export, one real server, eval, cell files and the report;
and a run killed with SIGKILL that resumes without redoing finished cells."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sae.cli import main
from sae.experiment.cellfile import METRIC_KEYS
from tests.test_experiment_report import SPREAD_CELL, VERDICT, tables, verdicts

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.server, pytest.mark.slow]

EVAL = """
[dataset]
procedural_images = 2000

[eval]
num_images = 16
fid_images = 6
train_codes = 64
classifier_images = 200
dci_regressor = "lasso"
heldout_images = 12
"""


def write_grid(path: Path, name: str, models: list[str], steps: int, arms: str = "") -> Path:
    path.write_text(
        f'name = "{name}"\nmodels = {json.dumps(models)}\nconfig_suffix = "-tiny"\nseeds = [0]\n'
        f"steps = {steps}\nbatch_size = 16\n{EVAL}{arms}"
    )
    return path


def test_grid_end_to_end_through_one_server(tmp_path, capsys):
    arm = '\n[[arms]]\nname = "no_ball"\nexclude = {shape = [2]}\nmodels = ["sae12"]\nseeds = [0]\nsteps = 10\n'
    grid = write_grid(tmp_path / "e2e.toml", "e2e", ["sae12", "vae"], 20, arm)
    out = tmp_path / "out"
    assert main(["experiment", str(grid), "--out", str(out), "--device", "cpu"]) == 0
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert set(cells) == {"sae12-s0", "vae-s0", "sae12-s0-no_ball"}
    for cell_id in ("sae12-s0", "vae-s0"):
        cell = cells[cell_id]
        assert cell["schema"] == 1 and cell["kind"] == "main" and cell["steps"] == 20 and cell["seed"] == 0
        assert cell["config"]["train"]["seed"] == 0 and cell["config"]["train"]["steps"] == 20
        metrics = cell["metrics"]
        assert set(metrics) == set(METRIC_KEYS)
        for key, value in metrics.items():
            if key == "fid_prior" and not cell["has_prior"]:  # SAE sets serve no prior sampler
                assert value is None
                continue
            if key == "dci_regressor":
                assert value == "lasso"
            else:
                assert isinstance(value, (int, float)) and not isinstance(value, bool), (cell_id, key, value)
        assert metrics["fid_images"] == 6 and cell["draw_mode"] == "independent"
        matrix = cell["dci_importance"]
        assert len(matrix) == 12 and all(len(row) == len(cell["factor_names"]) == 6 for row in matrix)
        assert cell["variable_of_dim"] == list(range(12))
        assert cell["dataset"]["label"] == "procedural" and cell["dataset"]["images"] == 2000
        for key in ("traversals", "hybrid_samples", "reconstructions"):
            thumb = out / cell["thumbnails"][key]
            assert thumb.is_file() and thumb.stat().st_size <= 60_000
    assert cells["sae12-s0"]["family"] == "sae" and not cells["sae12-s0"]["has_prior"]
    assert cells["vae-s0"]["family"] == "vae" and cells["vae-s0"]["has_prior"]
    extrapolation = cells["sae12-s0-no_ball"]["extrapolation"]
    assert extrapolation["excluded"] == {"shape": [2]} and extrapolation["pretrain_fraction"] == 0.8
    assert extrapolation["pretrain_steps"] == 8 and extrapolation["finetune_steps"] == 2
    mse = extrapolation["heldout_mse_x1000"]
    assert set(mse) == {"none", "encoder", "decoder", "both"} and all(0 < v < 1000 for v in mse.values())
    assert extrapolation["heldout_images"] == 12
    # each fine-tuned set is its own export of its own run
    work = out / "work"
    steps = {
        mode: json.loads((work / "exports" / f"sae12_s0_no_ball_{mode}.json").read_text())["checkpoint_step"]
        for mode in mse
    }
    assert steps == {"none": 8, "encoder": 2, "decoder": 2, "both": 2}
    assert json.loads((out / "results.json").read_text())["cells"]
    report = out / "REPORT.md"
    per_model = tables(report, "Per model")
    assert per_model and {row[0] for _, rows in per_model for row in rows} == {"SAE-12", "VAE"}
    for header, rows in per_model + tables(report, "Extrapolation"):
        for row in rows:
            for column, value in zip(header[2:], row[2:]):
                if value == "—":  # the one allowed non-number: prior FID of a model without a prior
                    assert column == "FID prior" and row[0] == "SAE-12"
                else:
                    assert SPREAD_CELL.match(value), (row[0], column, value)
    found = verdicts(report)
    assert set(found) == {f"C{i}" for i in range(1, 7)} and all(VERDICT.match(v) for v in found.values()), found
    assert not (work / "tritonserver.json").exists()  # the server was stopped and its record removed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stamp(path: Path) -> tuple[int, bytes]:
    return path.stat().st_mtime_ns, path.read_bytes()


def test_kill_and_resume_redoes_no_finished_cell(tmp_path):
    grid = write_grid(tmp_path / "resume.toml", "resume", ["sae12", "ae"], 20)
    out, log1, log2 = tmp_path / "out", tmp_path / "first.log", tmp_path / "second.log"
    command = [sys.executable, "-m", "sae", "experiment", str(grid), "--out", str(out), "--device", "cpu"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log1, "w") as log:
        runner = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    first = out / "cells" / "sae12-s0.json"
    deadline = time.monotonic() + 600
    try:
        while not (first.exists() and "] ae-s0: train" in log1.read_text()):
            assert runner.poll() is None, log1.read_text()[-3000:]
            assert time.monotonic() < deadline, "the first cell did not finish in time"
            time.sleep(0.2)
        runner.send_signal(signal.SIGKILL)
        runner.wait()
    finally:
        if runner.poll() is None:
            runner.kill()
    work = out / "work"
    record = json.loads((work / "tritonserver.json").read_text())
    # PR_SET_PDEATHSIG sends the server SIGKILL when its runner dies, but a server with a pending SIGKILL can still
    # read as running for a moment while its threads end: only one alive well after the kill has survived it.
    gone_by = time.monotonic() + 30
    while _alive(record["pid"]) and time.monotonic() < gone_by:
        time.sleep(0.2)
    server_survived_kill = _alive(record["pid"])
    if sys.platform == "linux":
        assert not server_survived_kill, "tritonserver outlived its SIGKILLed runner despite PR_SET_PDEATHSIG"
    kept = {
        p: _stamp(p)
        for p in (
            first,
            work / "runs" / "sae12-s0" / "checkpoints" / "last.pt",
            work / "eval" / "sae12-s0" / "eval.json",
        )
    }
    try:
        with open(log2, "w") as log:
            second = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900)
    finally:
        if server_survived_kill and _alive(record["pid"]):
            os.killpg(record["pid"], signal.SIGKILL)  # the server the killed runner left; never leave it behind
    text = log2.read_text()
    assert second.returncode == 0, text[-3000:]
    assert "sae12-s0: cell done already" in text and "] sae12-s0: train" not in text
    assert {p: _stamp(p) for p in kept} == kept
    assert {p.stem for p in (out / "cells").glob("*.json")} == {"sae12-s0", "ae-s0"}
    if server_survived_kill:  # SIGKILL cannot reach the server's own session: the next run stops it
        assert f"stopping tritonserver pid {record['pid']}" in text
    assert not _alive(record["pid"])
    assert not (work / "tritonserver.json").exists()
    print(f"tritonserver survived SIGKILL of the runner: {server_survived_kill}")
