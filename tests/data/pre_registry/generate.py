"""Writes the reference data of ``tests/test_pre_registry_layout.py``: run once, at commit 34f36e2 (the model zoo
before the kind registry), from the repository root:

    python tests/data/pre_registry/generate.py

It records, for a micro-sized model of every kind, the initial weights under ``torch.manual_seed(0)``, the parameter
order (the optimiser state follows it), and the outputs and losses on fixed inputs; and it trains a micro FactorVAE
(an auxiliary module with its own optimiser) for two steps, keeps that checkpoint, and records the weights after a
third step. The test checks that the current code builds, loads and continues these exactly. The script imports the
module paths of that commit, so it does not run on later ones.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from sae.training.config import (BackboneConfig, BetaTCVAEConfig, ExperimentConfig, FactorVAEConfig, LadderConfig,
                             ModelConfig, TrainConfig)
from sae.core.datasets.procedural import write_shapes3d_h5
from sae.training.models.autoencoder import build_model
from sae.training.trainer import Trainer, TrainerOptions

HERE = Path(__file__).resolve().parent
MICRO_BACKBONE = BackboneConfig(channels=8, groups=4, encoder_blocks=6, encoder_pool_after=(1, 2, 3, 4, 5),
                                encoder_mlp=(16,), decoder_blocks=5, decoder_upsample_before=(2, 3, 4, 5),
                                decoder_mlp=(16,))
MICRO_LADDER = LadderConfig(encoder_rung_convs=((8,),), encoder_rung_width=8, encoder_hidden=(8,),
                            decoder_hidden=(8,), features=4)
REGULARISERS = {"betatcvae": BetaTCVAEConfig(dataset_size=1000),
                "factorvae": FactorVAEConfig(discriminator_hidden=8, discriminator_layers=1)}
KINDS = ("sae", "adaae", "ae", "vae", "betavae", "betatcvae", "factorvae", "wae", "vlae")


def micro_config(kind: str) -> ExperimentConfig:
    k = 3 if kind in ("sae", "adaae", "vlae") else 6
    model = ModelConfig(kind, 6, k, (8,), MICRO_BACKBONE, REGULARISERS.get(kind),
                        MICRO_LADDER if kind == "vlae" else LadderConfig())
    return ExperimentConfig(f"micro-{kind}", model, TrainConfig(batch_size=4, lr=1e-3, steps=3, log_every=1,
                                                                checkpoint_every=2))


def reference(kind: str) -> dict:
    cfg = micro_config(kind)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    record = {"config": cfg.to_json(), "initial_state": {k: v.clone() for k, v in model.state_dict().items()},
              "parameter_order": [name for name, _ in model.named_parameters()]}
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    z = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    model.eval()
    with torch.no_grad():
        record["encoded"] = model.encode(x)
        record["decoded"] = model.decode(z)[:, :, ::4, ::4].clone()  # every 4th pixel: small, and enough
    model.train()
    torch.manual_seed(3)
    loss, terms = model.training_loss(x)
    record["loss"] = {"loss": loss.item(), **{name: t.item() for name, t in terms.items()}}
    for name in model.auxiliary_modules():
        record["loss"][f"{name}_loss"] = model.auxiliary_loss(name).item()
    if hasattr(model, "prior_sample"):
        record["prior_sample"] = model.prior_sample(3, generator=torch.Generator().manual_seed(4))
    return record


def factorvae_checkpoints(data: Path) -> None:
    cfg = micro_config("factorvae")
    options = TrainerOptions(tensorboard=False, val_every=2, val_batches=1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        trainer = Trainer(cfg, data, run, device="cpu", options=options)
        trainer.fit(steps=2, progress=False)
        shutil.copyfile(run / "checkpoints" / "last.pt", HERE / "factorvae-micro-step2.pt")
        trainer.fit(steps=3, progress=False)
        auxiliary = {name: m.state_dict() for name, m in trainer.auxiliary.items()}
        torch.save({"model": trainer.model.state_dict(), "auxiliary": auxiliary},
                   HERE / "factorvae-micro-step3-weights.pt")
        trainer.close()


def main() -> None:
    torch.set_num_threads(1)
    torch.save({kind: reference(kind) for kind in KINDS}, HERE / "reference.pt")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shapes3d.h5"
        write_shapes3d_h5(data, n=2048, seed=0)  # the `shapes_file` fixture of tests/conftest.py
        factorvae_checkpoints(data)


if __name__ == "__main__":
    main()
