"""The stages of a cell of `sae experiment` (train, export, evaluate, held-out reconstruction errors), each skipped
when its marker says it finished, and what they share: the layout, the data file and the experiment's server."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sae.core.datasets.base import DatasetError
from sae.core.errors import UsageError
from sae.core.wire import to_float_images
from sae.experiment.grid_spec import CellSpec, GridSpec
from sae.experiment.layout import Layout, RunnerOptions
from sae.experiment.markers import read_json, write_json
from sae.training.options import TrainingError

if TYPE_CHECKING:
    from sae.experiment.server import ExperimentServer

_log = logging.getLogger(__name__)

HELDOUT_THUMB_IMAGES = 8


class CellStages:
    """One stage a method; :class:`sae.experiment.runner.ExperimentRunner` runs them cell by cell."""

    def __init__(self, grid: GridSpec, options: RunnerOptions):
        self.grid = grid
        self.options = options
        self.layout = Layout(Path(options.out), options.work_dir)
        self._server: ExperimentServer | None = None
        self._data: Path | None = None

    # ------------------------------------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        _log.info(message)

    @property
    def server(self) -> ExperimentServer:
        from sae.experiment.server import ExperimentServer

        if self._server is None:
            self._server = ExperimentServer(self.layout.repository, self.layout.work, self.log)
        return self._server

    def data_path(self) -> Path:
        """--data, else the grid's file, else procedural 3D-Shapes rendered once into WORK (atomically)."""
        if self._data is not None:
            return self._data
        path = self.options.data or self.grid.dataset.path
        if path is None:
            spec = self.grid.dataset
            if spec.kind != "shapes3d" or spec.procedural_images is None:
                raise UsageError(
                    f"grid {self.grid.name} runs on the real {spec.kind} data: pass --data PATH (e.g. "
                    "3dshapes.h5, mpi3d_real.npz, a folder of aligned CelebA JPEGs)"
                )
            path = (
                self.layout.work / "data" / f"shapes3d-procedural-{spec.procedural_images}-s{spec.procedural_seed}.h5"
            )
            if not path.exists():
                from sae.core.datasets.procedural import write_shapes3d_h5

                self.log(f"rendering {spec.procedural_images} procedural 3D-Shapes images -> {path}")
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.tmp")
                write_shapes3d_h5(tmp, n=spec.procedural_images, seed=spec.procedural_seed)
                tmp.replace(path)
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"--data {path}: no such file or folder")
        self._data = path
        return path

    def dataset_record(self) -> dict[str, Any]:
        from sae.core.datasets import open_dataset
        from sae.evaluation.harness import is_procedural

        source = open_dataset(self.data_path())
        try:
            return {
                "kind": self.grid.dataset.kind,
                "label": "procedural" if is_procedural(source) else "real",
                "path": str(self.data_path()),
                "images": int(len(source)),
                "factor_names": list(source.factor_names),
            }
        finally:
            source.close()

    # ------------------------------------------------------------------------------------------------ stages
    def train(
        self,
        cell: CellSpec,
        run_dir: Path,
        steps: int,
        *,
        exclude=None,
        init_from: Path | None = None,
        freeze: str | None = None,
    ) -> dict[str, Any]:
        """Train ``run_dir`` to ``steps`` (resuming), unless its done-marker says it got there."""
        from sae.training.checkpoint import run_checkpoint

        marker_path = run_dir / "train.done.json"
        marker = read_json(marker_path)
        if marker and marker.get("step") == steps and run_checkpoint(run_dir).is_file():
            self.log(f"{cell.cell_id}: training {run_dir.name} done already (step {steps}), skipped")
            return marker
        from sae.training.trainer import Trainer, TrainerOptions

        cfg = cell.experiment_config(steps=steps, dataset_images=self.dataset_record()["images"])
        options = TrainerOptions(
            exclude={k: list(v) for k, v in exclude.items()} if exclude else None, init_from=init_from, freeze=freeze
        )
        started = time.perf_counter()
        trainer = Trainer(cfg, self.data_path(), run_dir, device=self.options.device, options=options)
        try:
            result = trainer.fit(steps=steps, progress=sys.stderr.isatty())
        finally:
            trainer.close()
        if result.step != steps:
            raise TrainingError(f"{cell.cell_id}: training {run_dir} stopped at step {result.step} of {steps}")
        marker = {"step": result.step, "seconds": time.perf_counter() - started, "config": cfg.name}
        write_json(marker_path, marker)
        return marker

    def export(self, cell: CellSpec, run_dir: Path, export_name: str, step: int) -> dict[str, Any]:
        marker_path = self.layout.export_marker(export_name)
        marker = read_json(marker_path)
        complete = (self.layout.repository / f"{export_name}_hybrid_sample").is_dir()
        if marker and marker.get("checkpoint_step") == step and complete:
            self.log(f"{cell.cell_id}: export {export_name} done already (step {step}), skipped")
            return marker
        from sae.export.model_set import export_run
        from sae.repository.configs import RepositoryOptions

        started = time.perf_counter()
        report = export_run(
            run_dir,
            self.layout.repository,
            options=RepositoryOptions(name=export_name),
            range_images=self.grid.bank_range_images,
        )
        marker = {
            "export_name": export_name,
            "checkpoint_step": report.step,
            "models": report.models,
            "seconds": time.perf_counter() - started,
        }
        write_json(marker_path, marker)
        return marker

    def evaluate(self, cell: CellSpec, export_name: str, step: int) -> tuple[dict[str, Any], float]:
        eval_dir = self.layout.eval_dir(cell)
        marker = read_json(eval_dir / "eval.done.json")
        result = read_json(eval_dir / "eval.json")
        if marker and marker.get("checkpoint_step") == step and result is not None:
            self.log(f"{cell.cell_id}: evaluation done already ({eval_dir / 'eval.json'}), skipped")
            return result, float(marker.get("seconds", 0.0))
        from sae.evaluation.harness import EvalConfig, evaluate

        shutil.rmtree(eval_dir, ignore_errors=True)  # an interrupted evaluation starts over
        ev = self.grid.eval
        started = time.perf_counter()
        self.server.load_set(export_name)
        try:
            result = evaluate(
                EvalConfig(
                    data=self.data_path(),
                    out=eval_dir,
                    url=self.server.url,
                    model=export_name,
                    fast=ev.dci_regressor == "lasso",
                    num_images=ev.num_images,
                    fid_images=ev.fid_images,
                    train_codes=ev.train_codes,
                    classifier_images=ev.classifier_images,
                    seed=cell.seed,
                    stats_cache=self.layout.work / "stats-cache",
                )
            )
        finally:
            self.server.unload_all()
        seconds = time.perf_counter() - started
        write_json(eval_dir / "eval.done.json", {"checkpoint_step": step, "seconds": seconds})
        return result, seconds

    def heldout_rows(self, cell: CellSpec) -> np.ndarray:
        """Test-split rows (of the full data) whose factors take a held-out value, at most ``heldout_images``."""
        from sae.core.datasets import dataset_splits, open_dataset

        source = open_dataset(self.data_path())
        try:
            test = dataset_splits(source)["test"]
            factors = source.read_factors(test)
            names = list(source.factor_names)
            held = np.zeros(len(test), bool)
            for name, values in cell.extrapolation_arm.exclude.items():
                held |= np.isin(factors[:, names.index(name)], values)
        finally:
            source.close()
        rows = test[held]
        limit = self.grid.eval.heldout_images
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(cell.seed).choice(rows, size=limit, replace=False))
        if not len(rows):
            raise DatasetError(
                f"{cell.cell_id}: the test split of {self.data_path()} holds no images with "
                f"{dict(cell.extrapolation_arm.exclude)}; use a larger data file"
            )
        return rows

    def heldout_errors(self, cell: CellSpec, steps: dict[str, int]) -> tuple[dict[str, Any], float]:
        """MSE x 1000 per fine-tune mode on the held-out test images, through each set's served reconstruct."""
        path = self.layout.eval_dir(cell) / "heldout.json"
        done = read_json(path)
        if done and done.get("checkpoint_steps") == steps:
            self.log(f"{cell.cell_id}: held-out evaluation done already ({path}), skipped")
            return done, float(done.get("seconds", 0.0))
        from sae.clients.triton_client import SAEClient
        from sae.core.datasets import batches_in_order, open_dataset
        from sae.core.draw import to_uint8

        started = time.perf_counter()
        rows = self.heldout_rows(cell)
        source = open_dataset(self.data_path())
        mse: dict[str, float] = {}
        examples: dict[str, np.ndarray] = {}
        shown = rows[np.unique(np.linspace(0, len(rows) - 1, HELDOUT_THUMB_IMAGES).astype(int))]
        try:
            for mode in cell.extrapolation_arm.modes:
                name = cell.export_name(mode)
                self.server.load_set(name)
                try:
                    with SAEClient(self.server.url, model=name) as client:
                        total, count, recon_shown, originals = 0.0, 0, [], []
                        for batch_rows, images in batches_in_order(source, rows, 256):
                            recon = client.reconstruct(images)
                            err = (to_float_images(images, np.float64) - recon.astype(np.float64)) ** 2
                            total += float(err.reshape(len(images), -1).mean(axis=1).sum())
                            count += len(images)
                            keep = np.isin(batch_rows, shown)
                            recon_shown.append(to_uint8(recon[keep]))
                            originals.append(images[keep])
                finally:
                    self.server.unload_all()
                mse[mode] = 1000.0 * total / count
                examples[mode] = np.concatenate(recon_shown)
                examples["original"] = np.concatenate(originals)
        finally:
            source.close()
        result: dict[str, Any] = {
            "checkpoint_steps": steps,
            "heldout_mse_x1000": mse,
            "heldout_images": int(len(rows)),
            "seconds": time.perf_counter() - started,
        }
        from sae.experiment.thumbs import grid_thumbnail

        ordered = [examples["original"]] + [examples[m] for m in cell.extrapolation_arm.modes]
        grid_thumbnail(
            self.layout.eval_dir(cell) / "heldout_reconstructions.png",
            np.concatenate(ordered),
            ncols=len(examples["original"]),
        )
        write_json(path, result)
        return result, result["seconds"]
