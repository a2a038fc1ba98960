"""What a run carries from step to step, and to and from its checkpoint: the model, its Adam, the auxiliary modules
(FactorVAE's discriminator) with their own Adam, the step, the best validation loss and where fine-tuning started.

Resuming refuses a checkpoint whose model, batch size, seed or ``--freeze`` differ from this run's: the data order
and the frozen weights depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae.training.checkpoint import Checkpoint
from sae.training.config import ExperimentConfig
from sae.training.models.autoencoder import Autoencoder
from sae.training.models.zoo import build_model
from sae.training.options import TrainerOptions, TrainingError

# Adam for an auxiliary module NAME unless the model's regulariser config has NAME_lr / NAME_betas (FactorVAE's
# discriminator: discriminator_lr, discriminator_betas; Kim & Mnih's 1e-4 and (0.5, 0.9)).
AUXILIARY_LR = 1e-4
AUXILIARY_BETAS = (0.5, 0.9)


def auxiliary_adam(cfg: ExperimentConfig, name: str, lr_override: float | None = None) -> dict[str, Any]:
    regulariser = cfg.model.regulariser
    lr = lr_override or float(getattr(regulariser, f"{name}_lr", AUXILIARY_LR))
    return {"lr": float(lr), "betas": tuple(getattr(regulariser, f"{name}_betas", AUXILIARY_BETAS))}


@dataclass
class TrainState:
    cfg: ExperimentConfig
    model: Autoencoder
    optimizer: torch.optim.Optimizer
    auxiliary: dict[str, nn.Module]
    auxiliary_optimizers: dict[str, torch.optim.Optimizer]
    freeze: str | None = None  # the part of the model that is not trained
    step: int = 0
    best_val_loss: float | None = None
    init_from: str | None = None  # the run or checkpoint fine-tuning started from

    @classmethod
    def create(cls, cfg: ExperimentConfig, options: TrainerOptions, device: torch.device) -> TrainState:
        """A fresh model seeded with ``cfg.train.seed`` and its optimisers; in channels_last memory format when
        ``options.channels_last`` (None: on CUDA). The weights are fp32 whatever ``options.precision``."""
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model).to(device)
        channels_last = options.for_device(device.type).channels_last
        if channels_last:
            # Module.to takes memory_format (torch's docs and code); its typed overloads leave it out.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        auxiliary = dict(model.auxiliary_modules())
        for module in auxiliary.values():
            module.to(device)
        if options.freeze:
            getattr(model, options.freeze).requires_grad_(False)
        auxiliary_ids = {id(p) for m in auxiliary.values() for p in m.parameters()}
        optimizer = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad and id(p) not in auxiliary_ids],
            lr=cfg.train.lr,
            betas=cfg.train.betas,
        )
        auxiliary_optimizers: dict[str, torch.optim.Optimizer] = {
            name: torch.optim.Adam(m.parameters(), **auxiliary_adam(cfg, name, options.auxiliary_lr))
            for name, m in auxiliary.items()
        }
        return cls(cfg, model, optimizer, auxiliary, auxiliary_optimizers, options.freeze)

    def auxiliary_tensor_names(self) -> list[str]:
        """``model.``-prefixed names of the auxiliary modules' parameters and buffers: trained by their own optimiser
        and synchronised by hand, so DistributedDataParallel must leave them alone."""
        ids = {id(t) for m in self.auxiliary.values() for t in [*m.parameters(), *m.buffers()]}
        return [f"model.{n}" for n, t in [*self.model.named_parameters(), *self.model.named_buffers()] if id(t) in ids]

    def resume(self, ckpt: Checkpoint, where: Path) -> None:
        """Continue the run saved in ``ckpt`` (read from ``where``), after checking it is this run."""
        if ckpt.config.model != self.cfg.model:
            raise TrainingError(
                f"{where} was trained with a different model config ({ckpt.config.name}); use a new --out directory"
            )
        for name, flag in (("batch_size", "--batch-size"), ("seed", "--seed")):
            was, now = getattr(ckpt.config.train, name), getattr(self.cfg.train, name)
            if was != now:
                raise TrainingError(
                    f"{where} was trained with {name} {was} but this run asks for {now}; resume with "
                    f"{flag} {was} (the data order depends on it) or use a new --out directory"
                )
        extra = ckpt.extra or {}
        if extra.get("freeze") != self.freeze:
            was = f"--freeze {extra['freeze']}" if extra.get("freeze") else "no --freeze"
            raise TrainingError(f"{where} was trained with {was}; resume with the same setting or use a new --out")
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        for name, saved in (ckpt.auxiliary or {}).items():
            if name in self.auxiliary:
                self.auxiliary[name].load_state_dict(saved["module"])
                self.auxiliary_optimizers[name].load_state_dict(saved["optimizer"])
        self.step = ckpt.step
        self.best_val_loss = extra.get("best_val_loss")
        self.init_from = extra.get("init_from")

    def initialise_from(self, source: Path, device: torch.device) -> None:
        """Fine-tuning: another run's weights (model and auxiliary modules), a fresh optimiser, step 0."""
        ckpt = Checkpoint.load(source, map_location=device)
        if ckpt.config.model != self.cfg.model:
            raise TrainingError(
                f"--init {source} holds a {ckpt.config.name} model whose model config differs from "
                f"{self.cfg.name}'s; fine-tune it with config {ckpt.config.name}"
            )
        self.model.load_state_dict(ckpt.model_state)
        for name, saved in (ckpt.auxiliary or {}).items():
            if name in self.auxiliary:
                self.auxiliary[name].load_state_dict(saved["module"])
        self.init_from = str(source.resolve())

    def checkpoint(self, extra: dict[str, Any]) -> Checkpoint:
        """This state as a checkpoint; ``extra`` adds what the run knows (data path, world size, ...)."""
        auxiliary = {
            name: {"module": m.state_dict(), "optimizer": self.auxiliary_optimizers[name].state_dict()}
            for name, m in self.auxiliary.items()
        }
        extra = {**extra, "best_val_loss": self.best_val_loss, "freeze": self.freeze, "init_from": self.init_from}
        return Checkpoint(self.cfg, self.model.state_dict(), self.step, self.optimizer.state_dict(), extra, auxiliary)
