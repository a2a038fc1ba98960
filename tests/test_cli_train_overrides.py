"""`sae train CONFIG --seed N --set FIELD=VALUE --config FILE.toml`: dotted, type-checked overrides of any field of
ExperimentConfig, written to the run's config.json."""

from __future__ import annotations

import dataclasses
import json

import pytest

from sae.cli import main
from sae.training.config import ExperimentConfig, get_config
from sae.training.overrides import OverrideError, apply_overrides, parse_assignment, toml_assignments


def overridden(*assignments: str) -> ExperimentConfig:
    return apply_overrides(get_config("sae12-tiny"), [parse_assignment(a) for a in assignments])


def test_set_changes_the_named_fields_with_their_types():
    cfg = overridden("train.lr=1e-3", "model.latent_dim=24", "model.strtfm_hidden=32,64", "train.betas=0.5,0.9")
    base = get_config("sae12-tiny")
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)
    assert cfg.model.latent_dim == 24 and cfg.model.strtfm_hidden == (32, 64) and cfg.train.betas == (0.5, 0.9)
    assert dataclasses.replace(cfg, model=base.model, train=base.train) == base  # nothing else moved
    assert cfg.model.backbone == base.model.backbone


def test_nested_and_regulariser_fields():
    cfg = overridden("model.backbone.channels=32")
    assert cfg.model.backbone.channels == 32
    vae = apply_overrides(get_config("betavae-tiny"), [parse_assignment("model.regulariser.beta=4")])
    with pytest.raises(OverrideError, match="model.regulariser.beta: expected float, got str 'x'"):
        apply_overrides(get_config("betavae-tiny"), {"model.regulariser.beta": "x"})  # a TOML string
    assert vae.model.regulariser.beta == 4.0


@pytest.mark.parametrize(
    "assignment,message",
    [
        ("model.latent_dm=16", "model.latent_dm: ModelConfig has no field 'latent_dm'; did you mean latent_dim?"),
        ("optimizer.lr=1e-3", "optimizer.lr: ExperimentConfig has no field 'optimizer'"),
        ("train.steps=many", "train.steps: expected int, got 'many'"),
        ("train.steps=1.5", "train.steps: expected int, got '1.5'"),
        ("train.betas=0.9", "train.betas: expected 2 values, got 1"),
        ("model.backbone=3", "model.backbone: ModelConfig.backbone is a table; set its fields"),
        ("train.lr.x=1", "train.lr.x: TrainConfig.lr is a value, not a table of fields"),
        ("train.lr", "expected FIELD=VALUE (e.g. train.lr=1e-3), got 'train.lr'"),
    ],
)
def test_a_bad_path_or_value_names_the_field(assignment, message):
    with pytest.raises(OverrideError) as error:
        overridden(assignment)
    assert message in str(error.value)


def test_toml_values_are_type_checked_too(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[train]\nsteps = "ten"\n')
    with pytest.raises(OverrideError, match="train.steps: expected int, got str 'ten'"):
        apply_overrides(get_config("sae12-tiny"), toml_assignments(path))


def test_an_override_that_breaks_the_config_is_refused_by_its_validation():
    with pytest.raises(ValueError, match="latent_dim=16 is not divisible"):
        overridden("model.latent_dim=16")  # SAE-12: 12 variables


def test_overrides_round_trip_into_config_json(tmp_path, shapes_file, capsys, one_torch_thread):
    toml = tmp_path / "overrides.toml"
    toml.write_text("[train]\nlr = 2e-4\nbatch_size = 16\n\n[model]\nlatent_dim = 16\nnum_variables = 8\n")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "sae12-tiny",
                "--data",
                str(shapes_file),
                "--out",
                str(run),
                "--steps",
                "1",
                "--device",
                "cpu",
                "--config",
                str(toml),
                "--set",
                "train.lr=1e-3",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    written = ExperimentConfig.from_dict(json.loads((run / "config.json").read_text()))
    expected = overridden(
        "train.lr=1e-3", "train.batch_size=16", "train.seed=7", "model.latent_dim=16", "model.num_variables=8"
    )
    assert written == expected  # --set after --config: lr 1e-3, not the file's 2e-4


def test_a_bad_override_is_one_line_naming_the_field(tmp_path, shapes_file, capsys):
    assert (
        main(
            [
                "train",
                "sae12-tiny",
                "--data",
                str(shapes_file),
                "--out",
                str(tmp_path / "run"),
                "--set",
                "model.latent_dm=16",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sae train: error: model.latent_dm: ModelConfig has no field 'latent_dm'; did you mean latent_dim?"]
    assert not (tmp_path / "run" / "checkpoints").exists()
