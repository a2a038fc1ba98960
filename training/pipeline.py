"""The trainer's data: the dataset and its splits, the deterministic stream of global batches, read-ahead, and the
conversion of uint8 images to model input.

The stream depends only on (seed, step): epoch e is shuffled with (seed, e), and resuming at step S skips the batches
already seen, so an interrupted run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from sae.core.datasets import ImageSource, batches_in_order, dataset_splits, open_dataset, shuffled_batches
from sae.training.config import ExperimentConfig
from sae.training.models.autoencoder import Autoencoder
from sae.training.options import TrainingDataError


def to_model_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch of uint8 NHWC images, moved to ``device`` and preprocessed as the models take it
    (``Autoencoder.preprocess``)."""
    x = images if isinstance(images, torch.Tensor) else torch.from_numpy(images)
    return Autoencoder.preprocess(x.to(device, non_blocking=True))


def open_training_data(
    path: Path, exclude: dict[str, list[int]] | None = None
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

    def __iter__(self) -> Prefetcher:
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


class TrainingData:
    """A config's dataset, opened and checked against it: image size, and enough training images for a batch."""

    def __init__(self, cfg: ExperimentConfig, path: Path, exclude: dict[str, list[int]] | None = None):
        self.cfg = cfg
        self.source, self.splits = open_training_data(path, exclude)
        expected, size = cfg.model.backbone.image_size, self.source.image_size
        if size != expected:
            self.source.close()
            raise TrainingDataError(
                f"{path} has {size}x{size} images but config {cfg.name} expects {expected}x{expected}; "
                f"pick a config made for {size}px data or pass a {expected}px data file"
            )
        bs = cfg.train.batch_size
        if len(self.splits["train"]) < bs:
            self.source.close()
            raise TrainingDataError(
                f"{path}: the train split holds {len(self.splits['train'])} images, fewer than "
                f"batch size {bs}; use a smaller --batch-size or a larger data file"
            )

    def check_processes(self, world_size: int) -> None:
        """Every process validates on a share of the val split: it must have an image for each."""
        if len(self.splits["val"]) < world_size:
            raise TrainingDataError(
                f"{self.source.path}: the val split holds {len(self.splits['val'])} images, fewer "
                f"than the {world_size} processes; use a larger data file"
            )

    def training_batches(self, start_step: int, device: torch.device, prefetch: int | None) -> Iterator[np.ndarray]:
        """Global batches from ``start_step`` on; read ahead in a thread ``prefetch`` deep (None: 2 on CUDA, pinned
        for async copies; 0 on CPU)."""
        stream = batch_stream(
            self.source, self.splits["train"], self.cfg.train.batch_size, self.cfg.train.seed, start_step
        )
        depth = (2 if device.type == "cuda" else 0) if prefetch is None else prefetch
        if depth <= 0:
            return stream
        pin = (lambda b: torch.from_numpy(b).pin_memory()) if device.type == "cuda" else None
        return Prefetcher(stream, depth, pin)

    def validation_rows(self, val_batches: int | None, rank: int, world_size: int) -> np.ndarray:
        """This rank's share of the first ``val_batches`` global batches of the val split (None: all of it)."""
        rows = self.splits["val"]
        if val_batches is not None:
            rows = rows[: val_batches * self.cfg.train.batch_size]
        return np.array_split(rows, world_size)[rank]

    def in_order(self, rows: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        """The images of ``rows`` (sorted) in file order, in batches of ``batch_size``, the last one partial."""
        return (images for _, images in batches_in_order(self.source, rows, batch_size))

    def close(self) -> None:
        self.source.close()
