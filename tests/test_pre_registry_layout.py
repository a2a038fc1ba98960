"""Models and checkpoints from before the kind registry (commit 34f36e2) still build, load and train the same.

``tests/data/pre_registry/`` was written by its ``generate.py`` at that commit: for a micro model of every kind the
initial weights under ``torch.manual_seed(0)``, the parameter order, outputs and losses on fixed inputs; and a micro
FactorVAE checkpoint after two steps with the weights after a third.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import shutil
from pathlib import Path

import pytest
import torch

from sae.training.checkpoint import Checkpoint
from sae.training.config import ExperimentConfig, get_config
from sae.training.models.zoo import build_model
from sae.training.trainer import Trainer, TrainerOptions

DATA = Path(__file__).parent / "data" / "pre_registry"
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = torch.load(DATA / "reference.pt", weights_only=True)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fixed_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs generate.py used."""
    return (
        torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1)),
        torch.randn(3, 6, generator=torch.Generator().manual_seed(2)),
    )


def test_every_kind_of_that_commit_is_recorded():
    assert set(REFERENCE) == {"sae", "adaae", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae"}


@pytest.mark.parametrize("kind", sorted(REFERENCE))
def test_a_fresh_model_has_the_same_weights_in_the_same_order(kind):
    ref = REFERENCE[kind]
    cfg = ExperimentConfig.from_dict(json.loads(ref["config"]))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    state = model.state_dict()
    assert list(state) == list(ref["initial_state"]), "state-dict keys (and their order) as in the checkpoints"
    assert all(torch.equal(state[k], ref["initial_state"][k]) for k in state), "the same initialisation"
    assert [name for name, _ in model.named_parameters()] == ref["parameter_order"], "the optimiser state's order"


@pytest.mark.parametrize("kind", sorted(REFERENCE))
def test_the_old_weights_give_the_same_outputs_and_losses(kind):
    ref = REFERENCE[kind]
    model = build_model(ExperimentConfig.from_dict(json.loads(ref["config"])).model)
    model.load_state_dict(ref["initial_state"])  # strict: every key of that commit, and no other
    x, z = _fixed_inputs()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.encode(x), ref["encoded"], rtol=1e-5, atol=1e-6)
        assert torch.allclose(model.decode(z)[:, :, ::4, ::4], ref["decoded"], rtol=1e-5, atol=1e-5)
    model.train()
    torch.manual_seed(3)
    loss, terms = model.training_loss(x)
    got = {"loss": loss.item(), **{name: t.item() for name, t in terms.items()}}
    for name in model.auxiliary_modules():
        got[f"{name}_loss"] = model.auxiliary_loss(name).item()
    assert got == pytest.approx(ref["loss"], rel=1e-5)
    assert model.has_prior == ("prior_sample" in ref)
    if model.has_prior:
        assert torch.equal(model.prior_sample(3, generator=torch.Generator().manual_seed(4)), ref["prior_sample"])


def test_a_checkpoint_of_that_commit_resumes_and_takes_the_same_step(tmp_path, shapes_file):
    """The FactorVAE checkpoint (main and discriminator optimisers) resumes; step 3 gives that commit's weights."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(DATA / "factorvae-micro-step2.pt", run / "checkpoints" / "last.pt")
    old = Checkpoint.load(run)
    assert old.step == 2 and set(old.auxiliary) == {"discriminator"}
    trainer = Trainer(
        old.config,
        shapes_file,
        run,
        device="cpu",
        options=TrainerOptions(tensorboard=False, val_every=2, val_batches=1),
    )
    assert trainer.step == 2
    trainer.fit(steps=3, progress=False)
    trainer.close()
    expected = torch.load(DATA / "factorvae-micro-step3-weights.pt", weights_only=True)
    now = Checkpoint.load(run)
    assert now.step == 3 and list(now.model_state) == list(expected["model"])
    lr = old.config.model.regulariser.discriminator_lr
    _assert_same_weights(now.model_state, expected["model"], lr, before_norm={"discriminator.net.0.bias"})
    _assert_same_weights(
        now.auxiliary["discriminator"]["module"], expected["auxiliary"]["discriminator"], lr, before_norm={"net.0.bias"}
    )


def _assert_same_weights(
    got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], lr: float, before_norm: set[str]
) -> None:
    """Every tensor as recorded, except that a bias feeding a BatchNorm may differ by a few Adam steps.

    BatchNorm subtracts the batch mean, so such a bias has a gradient of zero up to rounding, and Adam divides that
    rounding by its own size: the bias moves by sign noise of about ``lr`` a step, which differs between CPUs'
    summation orders. It is the only kind of tensor allowed that slack.
    """
    assert _biases_feeding_a_batchnorm(expected) == before_norm
    for k, v in expected.items():
        if k in before_norm:
            assert (got[k] - v).abs().max() <= 3 * lr, k
        else:
            assert torch.allclose(got[k], v, rtol=1e-5, atol=1e-6), k


def _biases_feeding_a_batchnorm(state: dict[str, torch.Tensor]) -> set[str]:
    """Keys ``<seq>.<i>.bias`` whose next layer ``<seq>.<i+1>`` is a BatchNorm (it has running statistics)."""
    found = set()
    for key in state:
        prefix, _, leaf = key.rpartition(".")
        head, _, index = prefix.rpartition(".")
        if leaf == "bias" and index.isdigit() and f"{head}.{int(index) + 1}.running_mean" in state:
            found.add(key)
    return found


@pytest.mark.parametrize("path", sorted(glob.glob(str(ROOT / "docs/reproduction/*/cells/*.json"))))
def test_the_configs_of_committed_reproduction_cells_still_load(path):
    recorded = json.loads(Path(path).read_text())["config"]
    cfg = ExperimentConfig.from_dict(recorded)
    assert json.loads(cfg.to_json()) == recorded, "and is written back as it was recorded"
    named = get_config(recorded["name"]).model  # (a grid sets β-TCVAE's dataset_size to its own training split)
    assert dataclasses.replace(cfg.model, regulariser=named.regulariser) == named, "its named config is unchanged"
    assert type(cfg.model.regulariser) is type(named.regulariser)
