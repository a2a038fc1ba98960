"""The package from Python, in four names: ``train``, ``export``, ``load_model`` and the client ``SAEClient``.

    from sae import train, export, load_model, SAEClient
    result = train("sae12-tiny", "data/shapes3d.h5", "runs/tiny", steps=1000, train__lr=1e-3)
    export(result.run_dir, "model_repository", name="sae12")
    model = load_model("runs/tiny")                       # eager torch module in eval mode
    with SAEClient("127.0.0.1:8001", model="sae12") as client:
        samples = client.sample(64, seed=0)

torch is imported by the calls that need it, not by importing this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sae.clients.triton_client import SAEClient

__all__ = ["SAEClient", "export", "load_model", "train"]


def train(
    config,
    data: str | Path,
    out: str | Path,
    steps: int | None = None,
    *,
    device: str | None = None,
    progress: bool = True,
    **overrides: Any,
):
    """Train ``config`` (a named config or an ExperimentConfig) on ``data`` into the run folder ``out``.

    ``overrides`` set fields by their dotted path with ``__`` for the dot (``train__lr=1e-3``,
    ``model__latent_dim=16``), type-checked as ``sae train --set`` is. ``steps``: total steps (default: the
    config's). Running it again on the same ``out`` resumes. Returns the trainer's TrainResult (``run_dir``, ...).
    """
    from sae.training.config import ExperimentConfig, get_config
    from sae.training.overrides import apply_overrides
    from sae.training.trainer import Trainer

    if isinstance(config, str):
        config = get_config(config)
    elif not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be a named config or an ExperimentConfig, got {type(config).__name__}")
    config = apply_overrides(config, {key.replace("__", "."): value for key, value in overrides.items()})
    trainer = Trainer(config, Path(data), Path(out), device=device)
    try:
        return trainer.fit(steps=steps, progress=progress)
    finally:
        trainer.close()


def export(run: str | Path, repo: str | Path, name: str = "", **options: Any):
    """Export a run folder or checkpoint into the Triton repository ``repo`` as the set ``name`` (``NAME_encode``,
    ...), checked by ``sae validate`` before it is swapped in. ``options``: the other arguments of
    ``sae.export.model_set.export_run`` (``flavour``, ``bank_size``, ``data_path``, ...). Returns its ExportReport."""
    from sae.export.model_set import export_run

    return export_run(Path(run), Path(repo), name=name, **options)


def load_model(run: str | Path, which: str = "last.pt", device: str = "cpu"):
    """A run folder (its ``checkpoints/WHICH``) or a checkpoint file -> the eager model, in eval mode on ``device``."""
    from sae.training.checkpoint import Checkpoint

    return Checkpoint.load(Path(run), map_location=device, which=which).eval_model(device)
