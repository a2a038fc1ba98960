"""The training loop: Adam on pixel BCE, checkpoints that resume, CPU or CUDA (bf16 autocast)."""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.checkpoint import LAST, Checkpoint
from training.config import ExperimentConfig
from clients.datasets import H5Images, shuffled_batches, split_indices
from training.models.autoencoder import Autoencoder, build_model


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    images_per_second: float


def to_model_input(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (the models' convention)."""
    x = torch.from_numpy(images).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def batch_stream(data: H5Images, indices: np.ndarray, batch_size: int, seed: int, start_step: int):
    """Endless deterministic batches; epoch e is shuffled with (seed, e). Resuming skips what was already seen."""
    per_epoch = len(indices) // batch_size
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        rng = np.random.default_rng([seed, epoch])
        for i, batch in enumerate(shuffled_batches(data, indices, batch_size, rng)):
            if i >= skip:
                yield batch
        skip = 0
        epoch += 1


class Trainer:
    def __init__(self, cfg: ExperimentConfig, data_path: Path, run_dir: Path, device: str | None = None):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.data = H5Images(data_path)
        if self.data.image_size != cfg.model.backbone.image_size:
            raise TrainingError(f"{data_path} has {self.data.image_size}px images but config {cfg.name} expects "
                                f"{cfg.model.backbone.image_size}px")
        self.splits = split_indices(len(self.data), seed=0)
        torch.manual_seed(cfg.train.seed)
        self.model: Autoencoder = build_model(cfg.model).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, betas=cfg.train.betas)
        self.step = 0
        self._resume()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / LAST

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        ckpt = Checkpoint.load(self.checkpoint_path, map_location=self.device)
        if ckpt.config.model != self.cfg.model:
            raise TrainingError(f"{self.checkpoint_path} was trained with a different model config "
                                f"({ckpt.config.name}); use a new --out directory")
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.step = ckpt.step

    def save(self) -> Path:
        extra = {"data_path": str(self.data.path.resolve())}
        Checkpoint(self.cfg, self.model.state_dict(), self.step, self.optimizer.state_dict(), extra).save(
            self.checkpoint_path)
        return self.checkpoint_path

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, images: np.ndarray) -> float:
        x = to_model_input(images, self.device)
        with self._autocast():
            loss, _ = self.model.training_loss(x)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {self.step}; lower the learning rate "
                                f"(now {self.cfg.train.lr}) or check the data")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def fit(self, steps: int | None = None, progress: bool = True) -> TrainResult:
        total = self.cfg.train.steps if steps is None else steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(self.cfg.to_json())
        bs = self.cfg.train.batch_size
        stream = batch_stream(self.data, self.splits["train"], bs, self.cfg.train.seed, self.step)
        self.model.train()
        loss, rate, started, first = math.nan, 0.0, time.perf_counter(), self.step
        bar = tqdm(total=total, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True)
        with bar:
            while self.step < total:
                loss = self.train_step(next(stream))
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.train.log_every == 0 or self.step == total:
                    rate = (self.step - first) * bs / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{loss:.1f}", img_s=f"{rate:.0f}")
                    with (self.run_dir / "metrics.jsonl").open("a") as f:
                        f.write(json.dumps({"step": self.step, "loss": loss, "images_per_second": rate}) + "\n")
                if self.step % self.cfg.train.checkpoint_every == 0:
                    self.save()
        self.save()
        return TrainResult(self.run_dir, self.step, loss, rate)
