"""How to run a config (:class:`TrainerOptions`), and the errors a training setup or run stops with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sae.core.errors import SAEError

FREEZABLE = ("encoder", "decoder")
PRECISIONS = ("fp32", "bf16")  # fp32: no autocast; bf16: torch.autocast(device, bfloat16), weights stay fp32


class TrainingError(SAEError, RuntimeError):
    pass


class TrainingDataError(TrainingError, ValueError):
    """The data file does not fit the config (image size, too few images for a batch): an input error."""


class TrainerOptionError(TrainingError, ValueError):
    """A :class:`TrainerOptions` value that is not one of the allowed ones (a ``ValueError`` too)."""


def default_precision(device_type: str) -> str:
    """bf16 autocast on CUDA; fp32 elsewhere (on CPU bf16 is opt-in: ``--precision bf16``)."""
    return "bf16" if device_type == "cuda" else "fp32"


def default_channels_last(device_type: str) -> bool:
    """channels_last weights on CUDA; elsewhere opt-in (``--channels-last``)."""
    return device_type == "cuda"


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
    precision: str | None = None  # "fp32" or "bf16" (autocast; master weights fp32). None: default_precision(device)
    channels_last: bool | None = None  # model in channels_last memory format. None: default_channels_last(device)

    def for_device(self, device_type: str) -> TrainerOptions:
        """These options with ``precision`` and ``channels_last`` settled for ``device_type`` ("cpu", "cuda")."""
        precision = default_precision(device_type) if self.precision is None else self.precision
        channels_last = default_channels_last(device_type) if self.channels_last is None else self.channels_last
        return dataclasses.replace(self, precision=precision, channels_last=channels_last).validate()

    def validate(self) -> TrainerOptions:
        if self.precision is not None and self.precision not in PRECISIONS:
            raise TrainerOptionError(
                f"precision {self.precision!r} is not supported; use one of "
                f"{', '.join(PRECISIONS)} (or None: bf16 on CUDA, fp32 on CPU)"
            )
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise TrainerOptionError(
                f"channels_last must be True, False or None (the device's default), got {self.channels_last!r}"
            )
        if self.freeze not in (None, *FREEZABLE):
            raise TrainerOptionError(
                f"--freeze {self.freeze!r} is not a part of the model; use one of {', '.join(FREEZABLE)}"
            )
        if self.val_every is not None and self.val_every < 1:
            raise TrainerOptionError(f"--val-every must be a positive number of steps, got {self.val_every}")
        if self.val_batches is not None and self.val_batches < 1:
            raise TrainerOptionError(f"val_batches must be positive or None (all), got {self.val_batches}")
        return self
