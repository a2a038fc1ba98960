"""How to run a config (:class:`TrainerOptions`), and the error a training setup or run stops with."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from sae.clients.errors import SAEError

FREEZABLE = ("encoder", "decoder")


class TrainingError(SAEError, RuntimeError):
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
