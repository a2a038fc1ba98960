"""Config files with values of the wrong type: refused at the file, naming the key and the expected type.

TOML grid files (``sae experiment G.toml``) and a run's ``config.json`` (``ExperimentConfig.from_dict``, which also
builds ``ModelConfig``) go through one checker, :mod:`sae.core.typed_fields`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_experiment_grid import TOML_GRID

from sae.cli import main
from sae.core.typed_fields import matches
from sae.experiment.grid_spec import GridError
from sae.experiment.grid_toml import load_toml
from sae.training.config import ExperimentConfig, get_config

WRONG_TYPES = {  # replaced line -> (key, expected type as the message names it)
    ("steps = 30", 'steps = "100"'): ("steps", "int"),
    ("seeds = [0, 3]", 'seeds = [0, "3"]'): ("seeds", "tuple[int, ...]"),
    ("procedural_images = 2000", "procedural_images = 2000.5"): ("procedural_images", "int | None"),
    ('dci_regressor = "lasso"', "dci_regressor = 3"): ("dci_regressor", "str"),
    ("exclude = {shape = [2]}", "exclude = {shape = ['two']}"): ("exclude", "dict[str, tuple[int, ...]]"),
}


@pytest.mark.parametrize("change", sorted(WRONG_TYPES), ids=[k for k, _ in sorted(WRONG_TYPES.values())])
def test_grid_toml_with_a_wrong_type_names_the_key_and_exits_2(tmp_path, capsys, change):
    key, expected = WRONG_TYPES[change]
    path = tmp_path / "bad.toml"
    text = TOML_GRID.replace(*change)
    assert text != TOML_GRID
    path.write_text(text)
    with pytest.raises(GridError, match=re.escape(f"{key} must be {expected}, got")):
        load_toml(path)
    code = main(["experiment", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"{key} must be {expected}" in err and "Traceback" not in err


def config_dict() -> dict:
    return json.loads(get_config("sae12-tiny").to_json())


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("train", "steps", "100", "int"),
        ("train", "lr", "fast", "float"),
        ("train", "betas", [0.9], "tuple[float, float]"),
        ("model", "latent_dim", 12.5, "int"),
    ],
)
def test_config_json_with_a_wrong_type_names_the_key(section, key, value, expected):
    d = config_dict()
    assert key in d[section]
    d[section][key] = value
    with pytest.raises(ValueError, match=re.escape(f"{key} must be {expected}, got")):
        ExperimentConfig.from_dict(d)


def test_config_json_of_the_right_types_round_trips():
    cfg = get_config("sae12-tiny")
    assert ExperimentConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_an_int_is_a_float_but_a_bool_is_neither():
    assert matches(3, float) and matches(3.0, float) and not matches(True, float)
    assert not matches(True, int) and not matches(3.0, int) and matches(True, bool)
    assert matches(None, int | None) and not matches("x", int | None)
    assert matches([1, 2], tuple[int, ...]) and not matches([1, 2], tuple[int]) and matches("p", Path)


def test_a_shared_runs_config_json_of_the_wrong_type_is_one_line_and_exit_2(trained_run, tmp_path, capsys):
    """`sae export FOLDER` of a folder holding config.json and model.safetensors: a value of the wrong type in
    config.json is named by key and expected type, in one line, with exit 2."""
    from sae.training.checkpoint import Checkpoint
    from sae.training.weights_file import save_safetensors

    shared = tmp_path / "shared"
    shared.mkdir()
    save_safetensors(Checkpoint.load(trained_run), shared / "model.safetensors")
    config = json.loads((trained_run / "config.json").read_text())
    config["train"]["lr"] = "fast"
    (shared / "config.json").write_text(json.dumps(config))
    code = main(["export", str(shared), "--repo", str(tmp_path / "repo")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err == f"sae export: error: {shared / 'config.json'}: TrainConfig: lr must be float, got str 'fast'", err
