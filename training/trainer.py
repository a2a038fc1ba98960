"""The training loop, from one CPU to many GPUs on many nodes with the same command (under ``torchrun``).

Adam on the model's own objective (``model.training_loss``); auxiliary modules (FactorVAE's discriminator) on their own
Adam right after each main step. ``TrainerOptions.precision`` ("bf16": ``torch.autocast`` with bfloat16 around the
forward passes, the weights, gradients and Adam states staying fp32) and ``TrainerOptions.channels_last`` choose the
arithmetic on any device; both default to on for CUDA and off for the CPU. Optionally ``torch.compile``. Validation
every K steps, in fp32 whatever the precision (so validation losses compare across precisions),
``checkpoints/best.pt`` and ``checkpoints/last.pt``, metrics as CSV and TensorBoard events, a loss-curve PNG at the
end. An interrupted run resumes from ``last.pt`` with the same data order and random numbers, so it ends with
the same weights, logs and best checkpoint as an uninterrupted one.

The loop is all this module holds: the data and its batches are ``sae.training.pipeline``'s, the model, optimisers and
their checkpoint ``sae.training.train_state``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sae.core.atomic import write_text_atomic
from sae.training import distributed
from sae.training.checkpoint import BEST, LAST, Checkpoint, run_checkpoint
from sae.training.config import ExperimentConfig
from sae.training.metrics_log import MetricsLog, write_loss_curve
from sae.training.model_card import write_shared_run
from sae.training.models.autoencoder import Autoencoder
from sae.training.options import TrainerOptions, TrainingError
from sae.training.pipeline import Prefetcher, TrainingData, to_model_input
from sae.training.train_state import TrainState

__all__ = ["TrainResult", "Trainer", "TrainerOptions", "TrainingError", "to_model_input", "with_batch_size"]


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    images_per_second: float
    val_loss: float | None = None  # the latest validation loss of this fit (None: no validation step in it)
    best_val_loss: float | None = None
    precision: str = "fp32"  # the arithmetic of the training steps ("fp32" or "bf16" autocast)
    channels_last: bool = False


def step_seed(seed: int, rank: int, step: int, purpose: int = 0) -> int:
    """The torch seed for one step on one rank: random numbers (VAE noise, permutations) depend on nothing else,
    so a resumed run draws exactly what the uninterrupted run drew, without storing RNG states."""
    return int(np.random.SeedSequence([seed, rank, step, purpose]).generate_state(1)[0])


class _TrainingLoss(nn.Module):
    """Routes ``training_loss`` through ``forward`` so DistributedDataParallel and torch.compile see the step."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.training_loss(x)


class Trainer:
    def __init__(
        self,
        cfg: ExperimentConfig,
        data_path: Path,
        run_dir: Path,
        device: str | None = None,
        options: TrainerOptions | None = None,
    ):
        self.cfg = cfg.validate()
        self.options = (options or TrainerOptions()).validate()
        self.run_dir = Path(run_dir)
        self.pipeline = TrainingData(cfg, data_path, self.options.exclude)
        self.dist = distributed.setup(device)
        self.device = self.dist.device
        self.options = self.options.for_device(self.device.type)  # precision and channels_last settled
        distributed.check_batch_size(cfg.train.batch_size, self.dist)
        self.pipeline.check_processes(self.dist.world_size)

        self.state = TrainState.create(cfg, self.options, self.device)
        if self.checkpoint_path.exists():
            self.state.resume(Checkpoint.load(self.checkpoint_path, map_location=self.device), self.checkpoint_path)
        elif self.options.init_from is not None:
            self.state.initialise_from(Path(self.options.init_from), self.device)
        # The step: x -> (loss, terms), through DDP and torch.compile as asked (compile gives back a callable).
        self._step_module: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]] = (
            distributed.wrap_ddp(_TrainingLoss(self.model), self.dist, self.state.auxiliary_tensor_names())
        )
        if self.options.compile:
            self._step_module = torch.compile(self._step_module)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def model(self) -> Autoencoder:
        return self.state.model

    @property
    def step(self) -> int:
        return self.state.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.step = value

    @property
    def best_val_loss(self) -> float | None:
        return self.state.best_val_loss

    @property
    def data(self):
        """The dataset (an ``ImageSource``)."""
        return self.pipeline.source

    @property
    def splits(self) -> dict[str, np.ndarray]:
        return self.pipeline.splits

    @property
    def checkpoint_path(self) -> Path:
        return run_checkpoint(self.run_dir, LAST)

    def save(self, which: str = LAST) -> Path:
        """Write ``checkpoints/{which}`` (rank 0 only; the other ranks return the path without writing)."""
        path = run_checkpoint(self.run_dir, which)
        if self.dist.is_main:
            self.state.checkpoint(
                {
                    "data_path": str(self.data.path.resolve()),
                    "world_size": self.dist.world_size,
                    "exclude": self.options.exclude,
                    "precision": self.options.precision,
                    "channels_last": self.options.channels_last,
                }
            ).save(path)
        return path

    def close(self) -> None:
        """Release the data file and, if this trainer joined it, the process group."""
        self.pipeline.close()
        distributed.teardown(self.dist)

    # ------------------------------------------------------------------------------------------------ steps
    def _autocast(self):
        """bf16 autocast on this device for ``precision="bf16"``; nothing for fp32."""
        if self.options.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _model_input(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = to_model_input(images, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.options.channels_last else x

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.options.freeze:  # frozen parts keep eval behaviour (no normalisation statistics updates)
            getattr(self.model, self.options.freeze).eval()

    def training_batches(self) -> Iterator[np.ndarray]:
        """Global batches from the current step on (read ahead on CUDA, see ``TrainingData.training_batches``)."""
        return self.pipeline.training_batches(self.step, self.device, self.options.prefetch)

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        names = list(values)
        stacked = torch.stack([values[n].detach().float().reshape(()) for n in names])
        return dict(zip(names, distributed.all_reduce_mean(stacked, self.dist).tolist()))

    def train_step(self, images: np.ndarray | torch.Tensor) -> dict[str, float]:
        """One optimiser step on a global batch (this rank trains on its shard); returns the losses, mean over ranks."""
        torch.manual_seed(step_seed(self.cfg.train.seed, self.dist.rank, self.step))
        x = self._model_input(distributed.shard(images, self.dist))
        state = self.state
        state.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, terms = self._step_module(x)
        logged = self._mean_over_ranks({"loss": loss, **terms})
        if not math.isfinite(logged["loss"]):
            raise TrainingError(
                f"loss became {logged['loss']} at step {self.step}; lower the learning rate "
                f"(now {self.cfg.train.lr}) or check the data"
            )
        loss.backward()
        state.optimizer.step()
        for name, module in state.auxiliary.items():
            optimizer = state.auxiliary_optimizers[name]
            optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                aux_loss = self.model.auxiliary_loss(name)
            aux_loss.backward()
            distributed.all_reduce_gradients(module, self.dist)
            optimizer.step()
            logged.update(self._mean_over_ranks({f"{name}_loss": aux_loss}))
        return logged

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss (and terms) over the first ``val_batches`` global batches of the val split, in file order.

        The rows are split evenly over the ranks and the sums all-reduced, so the figure does not depend on the number
        of processes.
        """
        mine = self.pipeline.validation_rows(self.options.val_batches, self.dist.rank, self.dist.world_size)
        torch.manual_seed(step_seed(self.cfg.train.seed, self.dist.rank, self.step, purpose=1))
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        try:
            for images in self.pipeline.in_order(mine, self.cfg.train.batch_size // self.dist.world_size):
                loss, terms = self.model.training_loss(self._model_input(images))
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float() * len(images)
        finally:
            self._set_train_mode()
        sums["_count"] = torch.tensor(float(len(mine)), device=self.device)
        reduced = self._mean_over_ranks(sums)  # means over ranks of sums; their ratio is the mean over images
        count = reduced.pop("_count")
        return {name: value / count for name, value in reduced.items()}

    def fit(self, steps: int | None = None, progress: bool = True) -> TrainResult:
        """Train up to ``steps`` total steps (default: the config's), resuming from wherever this run is."""
        total = self.cfg.train.steps if steps is None else steps
        train_cfg = self.cfg.train
        val_every = self.options.val_every or train_cfg.checkpoint_every
        main = self.dist.is_main
        log: MetricsLog | None = None
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "config.json", self.cfg.to_json())
            log = MetricsLog(self.run_dir, self.step, tensorboard=self.options.tensorboard)
        stream = self.training_batches()
        self._set_train_mode()
        metrics: dict[str, float] = {"loss": math.nan}
        rate, val_loss, first, train_seconds = 0.0, None, self.step, 0.0
        bar = tqdm(
            total=total,
            initial=self.step,
            disable=not (progress and main),
            unit="step",
            dynamic_ncols=True,
            mininterval=0.1 if sys.stderr.isatty() else 10.0,
        )  # a log file gets a line every 10 s
        try:
            with bar:
                while self.step < total:
                    started = time.perf_counter()
                    metrics = self.train_step(next(stream))
                    train_seconds += time.perf_counter() - started
                    self.step += 1
                    bar.update(1)
                    if self.step % train_cfg.log_every == 0 or self.step == total:
                        rate = (self.step - first) * train_cfg.batch_size / train_seconds
                        bar.set_postfix(loss=f"{metrics['loss']:.1f}", img_s=f"{rate:.0f}")
                        if log:
                            log.log(self.step, "train", {**metrics, "images_per_second": rate})
                    if self.step % val_every == 0:
                        val = self.validate()
                        val_loss = val["loss"]
                        if log:
                            log.log(self.step, "val", val)
                        if self.state.best_val_loss is None or val_loss < self.state.best_val_loss:
                            self.state.best_val_loss = val_loss
                            self.save(BEST)
                    if self.step % train_cfg.checkpoint_every == 0 or self.step == total:
                        self.save(LAST)
        finally:
            if isinstance(stream, Prefetcher):
                stream.close()
            if log:
                log.close()
        if main:
            write_loss_curve(self.run_dir, title=f"{self.cfg.name}: {self.run_dir.name}")
            write_shared_run(self.run_dir, self.data)  # RUN/model.safetensors and the model card RUN/README.md
        precision, channels_last = self.options.precision, self.options.channels_last
        if precision is None or channels_last is None:
            raise TrainingError("the trainer's options were not settled for its device (TrainerOptions.for_device)")
        return TrainResult(
            self.run_dir, self.step, metrics["loss"], rate, val_loss, self.best_val_loss, precision, channels_last
        )


def with_batch_size(cfg: ExperimentConfig, batch_size: int | None) -> ExperimentConfig:
    """The config with another batch size (recorded in the run, so a resume must use the same one)."""
    if batch_size is None:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch_size))
