"""The training loop, from one CPU to many GPUs on many nodes with the same command (under ``torchrun``).

Adam on the model's own objective (``model.training_loss``); auxiliary modules (FactorVAE's discriminator) on their own
Adam right after each main step. On CUDA: bf16 autocast and channels_last; optionally ``torch.compile``. Validation
every K steps, ``checkpoints/best.pt`` and ``checkpoints/last.pt``, metrics as CSV and TensorBoard events, a loss-curve
PNG at the end. An interrupted run resumes from ``last.pt`` with the same data order and random numbers, so it ends with
the same weights, logs and best checkpoint as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from clients.atomic import write_text_atomic
from clients.datasets import ImageSource, batches_in_order, dataset_splits, open_dataset, shuffled_batches
from training import distributed
from training.checkpoint import BEST, LAST, Checkpoint, run_checkpoint
from training.config import ExperimentConfig
from training.metrics_log import MetricsLog, write_loss_curve
from training.models.autoencoder import Autoencoder
from training.models.zoo import build_model

FREEZABLE = ("encoder", "decoder")
# Adam for an auxiliary module NAME unless the model's regulariser config has NAME_lr / NAME_betas (FactorVAE's
# discriminator: discriminator_lr, discriminator_betas; Kim & Mnih's 1e-4 and (0.5, 0.9)).
AUXILIARY_LR = 1e-4
AUXILIARY_BETAS = (0.5, 0.9)


class TrainingError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainerOptions:
    """How to run a config: none of these change the model; ``freeze`` and ``init_from`` are recorded in the run."""

    val_every: int | None = None  # steps between validations (None: the config's checkpoint_every)
    val_batches: int | None = 16  # validate on the first this-many batches of the val split (None: all of it)
    compile: bool = False  # torch.compile the training step
    freeze: str | None = None  # "encoder" or "decoder": its weights stay exactly as initialised / loaded
    init_from: Path | None = None  # run folder or checkpoint to start from (fine-tuning); ignored when resuming
    auxiliary_lr: float | None = None  # overrides the config's learning rate for auxiliary modules
    tensorboard: bool = True
    prefetch: int | None = None  # batches read ahead in a thread (None: 2 on CUDA, 0 on CPU)
    exclude: dict[str, list[int]] | None = None  # factor values left out of the data (extrapolation experiments)

    def validate(self) -> "TrainerOptions":
        if self.freeze not in (None, *FREEZABLE):
            raise TrainingError(f"--freeze {self.freeze!r} is not a part of the model; "
                                f"use one of {', '.join(FREEZABLE)}")
        if self.val_every is not None and self.val_every < 1:
            raise TrainingError(f"--val-every must be a positive number of steps, got {self.val_every}")
        if self.val_batches is not None and self.val_batches < 1:
            raise TrainingError(f"val_batches must be positive or None (all), got {self.val_batches}")
        return self


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_loss: float
    images_per_second: float
    val_loss: float | None = None  # the latest validation loss of this fit (None: no validation step in it)
    best_val_loss: float | None = None


def to_model_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] (the models' convention); the permuted view is channels_last in memory."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
    x = x.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def open_training_data(path: Path, exclude: dict[str, list[int]] | None = None
                       ) -> tuple[ImageSource, dict[str, np.ndarray]]:
    """The data (3D-Shapes .h5, MPI3D .npz or a CelebA folder) and its train/val/test rows, less excluded values."""
    data = open_dataset(path, exclude=exclude)
    return data, dataset_splits(data, seed=0)


def batch_stream(data: ImageSource, indices: np.ndarray, batch_size: int, seed: int, start_step: int):
    """Endless deterministic global batches; epoch e is shuffled with (seed, e). Resuming skips what was seen."""
    per_epoch = len(indices) // batch_size
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        rng = np.random.default_rng([seed, epoch])
        for i, batch in enumerate(shuffled_batches(data, indices, batch_size, rng)):
            if i >= skip:
                yield batch
        skip = 0
        epoch += 1


def step_seed(seed: int, rank: int, step: int, purpose: int = 0) -> int:
    """The torch seed for one step on one rank: random numbers (VAE noise, permutations) depend on nothing else,
    so a resumed run draws exactly what the uninterrupted run drew, without storing RNG states."""
    return int(np.random.SeedSequence([seed, rank, step, purpose]).generate_state(1)[0])


class Prefetcher:
    """Reads batches ahead in a background thread (h5py and numpy release the GIL while copying); order is kept."""

    _DONE = object()

    def __init__(self, batches: Iterator, depth: int, transform=None):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batches, transform), daemon=True)
        self._thread.start()

    def _run(self, batches: Iterator, transform) -> None:
        try:
            for batch in batches:
                item = transform(batch) if transform else batch
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as e:  # handed to the consumer, raised there
            self._queue.put(e)
            return
        self._queue.put(self._DONE)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._DONE:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _TrainingLoss(nn.Module):
    """Routes ``training_loss`` through ``forward`` so DistributedDataParallel and torch.compile see the step."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model.training_loss(x)


class Trainer:
    def __init__(self, cfg: ExperimentConfig, data_path: Path, run_dir: Path, device: str | None = None,
                 options: TrainerOptions | None = None):
        self.cfg = cfg.validate()
        self.options = (options or TrainerOptions()).validate()
        self.run_dir = Path(run_dir)
        self.data, self.splits = open_training_data(data_path, self.options.exclude)
        expected = cfg.model.backbone.image_size
        if self.data.image_size != expected:
            raise TrainingError(f"{data_path} has {self.data.image_size}x{self.data.image_size} images but config "
                                f"{cfg.name} expects {expected}x{expected}; pick a config made for "
                                f"{self.data.image_size}px data or pass a {expected}px data file")
        bs = cfg.train.batch_size
        if len(self.splits["train"]) < bs:
            raise TrainingError(f"{data_path}: the train split holds {len(self.splits['train'])} images, fewer than "
                                f"batch size {bs}; use a smaller --batch-size or a larger data file")
        self.dist = distributed.setup(device)
        self.device = self.dist.device
        distributed.check_batch_size(bs, self.dist)
        if len(self.splits["val"]) < self.dist.world_size:
            raise TrainingError(f"{data_path}: the val split holds {len(self.splits['val'])} images, fewer than the "
                                f"{self.dist.world_size} processes; use a larger data file")

        torch.manual_seed(cfg.train.seed)
        self.model: Autoencoder = build_model(cfg.model).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.auxiliary: dict[str, nn.Module] = dict(self.model.auxiliary_modules())
        for module in self.auxiliary.values():
            module.to(self.device)
        if self.options.freeze:
            getattr(self.model, self.options.freeze).requires_grad_(False)
        auxiliary_ids = {id(p) for m in self.auxiliary.values() for p in m.parameters()}
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters()
                                           if p.requires_grad and id(p) not in auxiliary_ids],
                                          lr=cfg.train.lr, betas=cfg.train.betas)
        self.auxiliary_optimizers = {name: torch.optim.Adam(m.parameters(), **self._auxiliary_adam(name))
                                     for name, m in self.auxiliary.items()}
        self.step = 0
        self.best_val_loss: float | None = None
        self.init_from: str | None = None
        if self.checkpoint_path.exists():
            self._resume(Checkpoint.load(self.checkpoint_path, map_location=self.device))
        elif self.options.init_from is not None:
            self._initialise_from(Path(self.options.init_from))

        auxiliary_ids |= {id(b) for m in self.auxiliary.values() for b in m.buffers()}
        ignored = [f"model.{n}" for n, t in [*self.model.named_parameters(), *self.model.named_buffers()]
                   if id(t) in auxiliary_ids]  # trained by their own optimiser, synchronised by hand
        self._step_module: nn.Module = distributed.wrap_ddp(_TrainingLoss(self.model), self.dist, ignored)
        if self.options.compile:
            self._step_module = torch.compile(self._step_module)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def checkpoint_path(self) -> Path:
        return run_checkpoint(self.run_dir, LAST)

    def _auxiliary_adam(self, name: str) -> dict:
        regulariser = getattr(self.cfg.model, "regulariser", None)
        lr = self.options.auxiliary_lr or getattr(regulariser, f"{name}_lr", AUXILIARY_LR)
        return {"lr": float(lr), "betas": tuple(getattr(regulariser, f"{name}_betas", AUXILIARY_BETAS))}

    def _resume(self, ckpt: Checkpoint) -> None:
        where = self.checkpoint_path
        if ckpt.config.model != self.cfg.model:
            raise TrainingError(f"{where} was trained with a different model config "
                                f"({ckpt.config.name}); use a new --out directory")
        for name, flag in (("batch_size", "--batch-size"), ("seed", "--seed")):
            was, now = getattr(ckpt.config.train, name), getattr(self.cfg.train, name)
            if was != now:
                raise TrainingError(f"{where} was trained with {name} {was} but this run asks for {now}; resume with "
                                    f"{flag} {was} (the data order depends on it) or use a new --out directory")
        extra = ckpt.extra or {}
        if extra.get("freeze") != self.options.freeze:
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

    def _initialise_from(self, source: Path) -> None:
        """Fine-tuning: another run's weights (model and auxiliary modules), a fresh optimiser, step 0."""
        ckpt = Checkpoint.load(source, map_location=self.device)
        if ckpt.config.model != self.cfg.model:
            raise TrainingError(f"--init {source} holds a {ckpt.config.name} model whose model config differs from "
                                f"{self.cfg.name}'s; fine-tune it with config {ckpt.config.name}")
        self.model.load_state_dict(ckpt.model_state)
        for name, saved in (ckpt.auxiliary or {}).items():
            if name in self.auxiliary:
                self.auxiliary[name].load_state_dict(saved["module"])
        self.init_from = str(source.resolve())

    def save(self, which: str = LAST) -> Path:
        """Write ``checkpoints/{which}`` (rank 0 only; the other ranks return the path without writing)."""
        path = run_checkpoint(self.run_dir, which)
        if not self.dist.is_main:
            return path
        extra = {"data_path": str(self.data.path.resolve()), "best_val_loss": self.best_val_loss,
                 "freeze": self.options.freeze, "init_from": self.init_from, "world_size": self.dist.world_size,
                 "exclude": self.options.exclude}
        auxiliary = {name: {"module": m.state_dict(), "optimizer": self.auxiliary_optimizers[name].state_dict()}
                     for name, m in self.auxiliary.items()}
        Checkpoint(self.cfg, self.model.state_dict(), self.step, self.optimizer.state_dict(), extra, auxiliary).save(path)
        return path

    def close(self) -> None:
        """Release the data file and, if this trainer joined it, the process group."""
        self.data.close()
        distributed.teardown(self.dist)

    # ------------------------------------------------------------------------------------------------ steps
    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.options.freeze:  # frozen parts keep eval behaviour (no normalisation statistics updates)
            getattr(self.model, self.options.freeze).eval()

    def training_batches(self) -> Iterator[np.ndarray]:
        """Global batches from the current step on, read ahead in a thread on CUDA (pinned for async copies)."""
        stream = batch_stream(self.data, self.splits["train"], self.cfg.train.batch_size, self.cfg.train.seed,
                              self.step)
        depth = self.options.prefetch
        if depth is None:
            depth = 2 if self.device.type == "cuda" else 0
        if depth <= 0:
            return stream
        pin = (lambda b: torch.from_numpy(b).pin_memory()) if self.device.type == "cuda" else None
        return Prefetcher(stream, depth, pin)

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        names = list(values)
        stacked = torch.stack([values[n].detach().float().reshape(()) for n in names])
        return dict(zip(names, distributed.all_reduce_mean(stacked, self.dist).tolist()))

    def train_step(self, images: np.ndarray | torch.Tensor) -> dict[str, float]:
        """One optimiser step on a global batch (this rank trains on its shard); returns the losses, mean over ranks."""
        torch.manual_seed(step_seed(self.cfg.train.seed, self.dist.rank, self.step))
        x = to_model_input(distributed.shard(images, self.dist), self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss, terms = self._step_module(x)
        logged = self._mean_over_ranks({"loss": loss, **terms})
        if not math.isfinite(logged["loss"]):
            raise TrainingError(f"loss became {logged['loss']} at step {self.step}; lower the learning rate "
                                f"(now {self.cfg.train.lr}) or check the data")
        loss.backward()
        self.optimizer.step()
        for name, module in self.auxiliary.items():
            optimizer = self.auxiliary_optimizers[name]
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
        rows = self.splits["val"]
        if self.options.val_batches is not None:
            rows = rows[:self.options.val_batches * self.cfg.train.batch_size]
        mine = np.array_split(rows, self.dist.world_size)[self.dist.rank]
        torch.manual_seed(step_seed(self.cfg.train.seed, self.dist.rank, self.step, purpose=1))
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        try:
            for _, images in batches_in_order(self.data, mine, self.cfg.train.batch_size // self.dist.world_size):
                x = to_model_input(images, self.device)
                with self._autocast():
                    loss, terms = self.model.training_loss(x)
                for name, value in {"loss": loss, **terms}.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float() * len(x)
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
        bar = tqdm(total=total, initial=self.step, disable=not (progress and main), unit="step", dynamic_ncols=True,
                   mininterval=0.1 if sys.stderr.isatty() else 10.0)  # a log file gets a line every 10 s
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
                        if self.best_val_loss is None or val_loss < self.best_val_loss:
                            self.best_val_loss = val_loss
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
        return TrainResult(self.run_dir, self.step, metrics["loss"], rate, val_loss, self.best_val_loss)


def with_batch_size(cfg: ExperimentConfig, batch_size: int | None) -> ExperimentConfig:
    """The config with another batch size (recorded in the run, so a resume must use the same one)."""
    if batch_size is None:
        return cfg
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=batch_size))
