"""`sae experiment`: train, export, serve and evaluate every cell of a grid, then build the report.

Stages of a main cell, each closed by a durable marker (``serving.experiment.markers``), so that a run stopped
anywhere (Ctrl-C, ``kill -9``, a reboot) and started again redoes nothing that finished:

1. train   ``WORK/runs/<cell>/train.done.json`` once the final step is reached (the trainer resumes from
           ``checkpoints/last.pt``);
2. export  ``WORK/exports/<set>.json`` with the checkpoint step (the export itself swaps folders in atomically);
3. eval    ``WORK/eval/<cell>/eval.done.json`` after ``eval.json`` is written (an interrupted eval is re-run);
4. cell    ``OUT/cells/<cell>.json``, written last, after the thumbnails.

An extrapolation cell pretrains without the held-out factor values, fine-tunes once per mode (encoder, decoder or
both updated) on the full training split, exports each, and measures reconstruction MSE on the test split's held-out
images through each set's served ``reconstruct`` (``WORK/eval/<cell>/heldout.json``).
"""
from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.experiment.cellfile import cell_record
from serving.experiment.grid import FREEZE_OF_MODE, CellSpec, GridSpec, expand, select, shard
from serving.experiment.markers import read_json, write_json
from serving.experiment.progress import Progress, format_minutes
from training.config import get_config

HYBRID_THUMB_SAMPLES = 16  # the first rows of the eval's hybrid-sample grid that hold at least this many
HELDOUT_THUMB_IMAGES = 8


@dataclass(frozen=True)
class RunnerOptions:
    out: Path
    work: Path | None = None  # default OUT/work
    data: Path | None = None  # default: the grid's dataset path, else procedural data rendered into WORK
    cells: str | None = None
    shard: str | None = None
    device: str | None = None
    command: str = "sae experiment"

    @property
    def work_dir(self) -> Path:
        return Path(self.work) if self.work is not None else Path(self.out) / "work"


@dataclass(frozen=True)
class Layout:
    out: Path
    work: Path

    @property
    def repository(self) -> Path:
        return self.work / "model_repository"

    def cell_file(self, cell: CellSpec) -> Path:
        return self.out / "cells" / f"{cell.cell_id}.json"

    def run_dir(self, cell: CellSpec, part: str | None = None) -> Path:
        root = self.work / "runs" / cell.cell_id
        return root if part is None else root / part

    def export_marker(self, export_name: str) -> Path:
        return self.work / "exports" / f"{export_name}.json"

    def eval_dir(self, cell: CellSpec) -> Path:
        return self.work / "eval" / cell.cell_id

    def thumb(self, cell: CellSpec, what: str) -> Path:
        return self.out / "thumbs" / f"{cell.cell_id}_{what}.png"


def selected_cells(grid: GridSpec, options: RunnerOptions) -> list[CellSpec]:
    return shard(select(expand(grid), options.cells), options.shard)


def dataset_images(data: Path | None) -> int | None:
    if data is None or not Path(data).exists():
        return None
    from clients.datasets import open_dataset

    source = open_dataset(data)
    try:
        return len(source)
    finally:
        source.close()


def plan_lines(grid: GridSpec, cells: list[CellSpec], data: Path | None = None) -> list[str]:
    """The dry-run plan: every selected cell's validated config, steps, batch size and estimated minutes."""
    images = dataset_images(data)
    lines = [f"grid {grid.name}: {len(cells)} cells selected of {len(expand(grid))}", "", grid.description.rstrip(),
             "", f"{'cell':<34} {'kind':<13} {'config':<22} {'steps':>16} {'batch':>5} {'est. min':>8}"]
    for cell in cells:
        cfg = cell.experiment_config(dataset_images=images)  # validated
        if cell.arm is not None:
            cell.experiment_config(steps=cell.finetune_steps, dataset_images=images)
            steps = f"{cell.pretrain_steps}+{len(cell.finetune_modes)}x{cell.finetune_steps}"
        else:
            steps = str(cell.steps)
        lines.append(f"{cell.cell_id:<34} {cell.kind:<13} {cfg.name:<22} {steps:>16} {cfg.train.batch_size:>5} "
                     f"{cell.estimated_minutes():>8.1f}")
        m = cfg.model
        detail = (f"    {m.kind}, latent {m.latent_dim}, variables {len(m.variable_sizes)}, lr {cfg.train.lr:g}, "
                  f"seed {cfg.train.seed}, dataset {cfg.dataset}")
        if cell.arm is not None:
            detail += (f"; arm {cell.arm.name}: exclude {dict(cell.arm.exclude)}, pretrain {cell.pretrain_steps} "
                       f"steps, then fine-tune {', '.join(cell.finetune_modes)} {cell.finetune_steps} steps each")
        lines.append(detail)
    total = sum(c.estimated_minutes() for c in cells)
    lines += ["", f"estimated compute: {total:.0f} min ({format_minutes(total)}) for {len(cells)} cells, "
                  f"{format_minutes(max((c.estimated_minutes() for c in cells), default=0))} for the longest cell"]
    return lines


class ExperimentRunner:
    def __init__(self, grid: GridSpec, options: RunnerOptions):
        self.grid = grid
        self.options = options
        self.layout = Layout(Path(options.out), options.work_dir)
        self.cells = selected_cells(grid, options)
        self.progress = Progress({c.cell_id: c.estimated_minutes() for c in self.cells})
        self._server = None
        self._data: Path | None = None

    # ------------------------------------------------------------------------------------------------ helpers
    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    @property
    def server(self):
        from serving.experiment.server import ExperimentServer

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
                raise ValueError(f"grid {self.grid.name} runs on the real {spec.kind} data: pass --data PATH (e.g. "
                                 "3dshapes.h5, mpi3d_real.npz, a folder of aligned CelebA JPEGs)")
            path = self.layout.work / "data" / f"shapes3d-procedural-{spec.procedural_images}-s{spec.procedural_seed}.h5"
            if not path.exists():
                from training.data.procedural import write_shapes3d_h5

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
        from clients.datasets import open_dataset
        from clients.evaluation.harness import is_procedural

        source = open_dataset(self.data_path())
        try:
            return {"kind": self.grid.dataset.kind, "label": "procedural" if is_procedural(source) else "real",
                    "path": str(self.data_path()), "images": int(len(source)),
                    "factor_names": list(source.factor_names)}
        finally:
            source.close()

    # ------------------------------------------------------------------------------------------------ stages
    def train(self, cell: CellSpec, run_dir: Path, steps: int, *, exclude=None, init_from: Path | None = None,
              freeze: str | None = None) -> dict[str, Any]:
        """Train ``run_dir`` to ``steps`` (resuming), unless its done-marker says it got there."""
        from training.checkpoint import run_checkpoint

        marker_path = run_dir / "train.done.json"
        marker = read_json(marker_path)
        if marker and marker.get("step") == steps and run_checkpoint(run_dir).is_file():
            self.log(f"{cell.cell_id}: training {run_dir.name} done already (step {steps}), skipped")
            return marker
        from training.trainer import Trainer, TrainerOptions

        cfg = cell.experiment_config(steps=steps, dataset_images=self.dataset_record()["images"])
        options = TrainerOptions(exclude={k: list(v) for k, v in exclude.items()} if exclude else None,
                                 init_from=init_from, freeze=freeze)
        started = time.perf_counter()
        trainer = Trainer(cfg, self.data_path(), run_dir, device=self.options.device, options=options)
        try:
            result = trainer.fit(steps=steps, progress=sys.stderr.isatty())
        finally:
            trainer.close()
        if result.step != steps:
            raise RuntimeError(f"{cell.cell_id}: training {run_dir} stopped at step {result.step} of {steps}")
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
        from export.model_set import export_run
        from repository.configs import RepositoryOptions

        started = time.perf_counter()
        report = export_run(run_dir, self.layout.repository, options=RepositoryOptions(name=export_name),
                            range_images=self.grid.bank_range_images)
        marker = {"export_name": export_name, "checkpoint_step": report.step, "models": report.models,
                  "seconds": time.perf_counter() - started}
        write_json(marker_path, marker)
        return marker

    def evaluate(self, cell: CellSpec, export_name: str, step: int) -> tuple[dict[str, Any], float]:
        eval_dir = self.layout.eval_dir(cell)
        marker = read_json(eval_dir / "eval.done.json")
        result = read_json(eval_dir / "eval.json")
        if marker and marker.get("checkpoint_step") == step and result is not None:
            self.log(f"{cell.cell_id}: evaluation done already ({eval_dir / 'eval.json'}), skipped")
            return result, float(marker.get("seconds", 0.0))
        from clients.evaluation.harness import EvalConfig, evaluate

        shutil.rmtree(eval_dir, ignore_errors=True)  # an interrupted evaluation starts over
        ev = self.grid.eval
        started = time.perf_counter()
        self.server.load_set(export_name)
        try:
            result = evaluate(EvalConfig(
                data=self.data_path(), out=eval_dir, url=self.server.url, model=export_name,
                fast=ev.dci_regressor == "lasso", num_images=ev.num_images, fid_images=ev.fid_images,
                train_codes=ev.train_codes, classifier_images=ev.classifier_images, seed=cell.seed,
                stats_cache=self.layout.work / "stats-cache"))
        finally:
            self.server.unload_all()
        seconds = time.perf_counter() - started
        write_json(eval_dir / "eval.done.json", {"checkpoint_step": step, "seconds": seconds})
        return result, seconds

    def heldout_rows(self, cell: CellSpec) -> np.ndarray:
        """Test-split rows (of the full data) whose factors take a held-out value, at most ``heldout_images``."""
        from clients.datasets import dataset_splits, open_dataset

        source = open_dataset(self.data_path())
        try:
            test = dataset_splits(source)["test"]
            factors = source.read_factors(test)
            names = list(source.factor_names)
            held = np.zeros(len(test), bool)
            for name, values in cell.arm.exclude.items():
                held |= np.isin(factors[:, names.index(name)], values)
        finally:
            source.close()
        rows = test[held]
        limit = self.grid.eval.heldout_images
        if len(rows) > limit:
            rows = np.sort(np.random.default_rng(cell.seed).choice(rows, size=limit, replace=False))
        if not len(rows):
            raise ValueError(f"{cell.cell_id}: the test split of {self.data_path()} holds no images with "
                             f"{dict(cell.arm.exclude)}; use a larger data file")
        return rows

    def heldout_errors(self, cell: CellSpec, steps: dict[str, int]) -> tuple[dict[str, Any], float]:
        """MSE x 1000 per fine-tune mode on the held-out test images, through each set's served reconstruct."""
        path = self.layout.eval_dir(cell) / "heldout.json"
        done = read_json(path)
        if done and done.get("checkpoint_steps") == steps:
            self.log(f"{cell.cell_id}: held-out evaluation done already ({path}), skipped")
            return done, float(done.get("seconds", 0.0))
        from clients.datasets import batches_in_order, open_dataset
        from clients.triton_client import SAEClient, to_uint8

        started = time.perf_counter()
        rows = self.heldout_rows(cell)
        source = open_dataset(self.data_path())
        mse: dict[str, float] = {}
        examples: dict[str, np.ndarray] = {}
        shown = rows[np.unique(np.linspace(0, len(rows) - 1, HELDOUT_THUMB_IMAGES).astype(int))]
        try:
            for mode in cell.arm.modes:
                name = cell.export_name(mode)
                self.server.load_set(name)
                try:
                    with SAEClient(self.server.url, model=name) as client:
                        total, count, recon_shown, originals = 0.0, 0, [], []
                        for batch_rows, images in batches_in_order(source, rows, 256):
                            recon = client.reconstruct(images)
                            err = (images.astype(np.float64) / 255.0 - recon.astype(np.float64)) ** 2
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
        result = {"checkpoint_steps": steps, "heldout_mse_x1000": mse, "heldout_images": int(len(rows)),
                  "seconds": time.perf_counter() - started}
        from serving.experiment.thumbs import grid_thumbnail

        ordered = [examples["original"]] + [examples[m] for m in cell.arm.modes]
        grid_thumbnail(self.layout.eval_dir(cell) / "heldout_reconstructions.png", np.concatenate(ordered),
                       ncols=len(examples["original"]))
        write_json(path, result)
        return result, result["seconds"]

    # ------------------------------------------------------------------------------------------------ cells
    def run_main(self, cell: CellSpec) -> dict[str, Any]:
        from serving.experiment.thumbs import thumbnail_of, write_thumbnail, read_png

        events = self.progress.event
        run_dir = self.layout.run_dir(cell)
        events(cell.cell_id, "train")
        trained = self.train(cell, run_dir, cell.steps)
        events(cell.cell_id, "export")
        exported = self.export(cell, run_dir, cell.export_name(), trained["step"])
        events(cell.cell_id, "eval")
        result, eval_seconds = self.evaluate(cell, cell.export_name(), trained["step"])
        figures = {k: self.layout.eval_dir(cell) / v["path"] for k, v in (result.get("figures") or {}).items()
                   if isinstance(v, dict) and isinstance(v.get("path"), str)}
        thumbs: dict[str, str | None] = {}
        for key, figure in (("traversals", "traversals"), ("reconstructions", "reconstructions"),
                            ("prior_samples", "prior_samples")):
            if figure in figures and figures[figure].is_file():
                thumbnail_of(figures[figure], self.layout.thumb(cell, key))
                thumbs[key] = self._relative(self.layout.thumb(cell, key))
        if "hybrid_samples" in figures and figures["hybrid_samples"].is_file():
            grid = read_png(figures["hybrid_samples"])
            tile = get_config(cell.config_name).model.backbone.image_size + 2  # image_grid's 2 px padding
            rows = -(-HYBRID_THUMB_SAMPLES // ((grid.shape[1] - 2) // tile))
            write_thumbnail(self.layout.thumb(cell, "hybrid"), grid[:2 + rows * tile])
            thumbs["hybrid_samples"] = self._relative(self.layout.thumb(cell, "hybrid"))
        dataset = self.dataset_record()
        cfg = cell.experiment_config(dataset_images=dataset["images"])
        return cell_record(cell, cfg, dataset=self._dataset_entry(dataset), factor_names=dataset["factor_names"],
                           seconds={"train": trained["seconds"], "export": exported["seconds"], "eval": eval_seconds},
                           eval_result=result, thumbnails=thumbs)

    def run_arm(self, cell: CellSpec) -> dict[str, Any]:
        from serving.experiment.thumbs import thumbnail_of

        events = self.progress.event
        arm = cell.arm
        pre_dir = self.layout.run_dir(cell, "pretrain")
        events(cell.cell_id, f"pretrain without {dict(arm.exclude)}")
        trained = {"none": self.train(cell, pre_dir, cell.pretrain_steps, exclude=arm.exclude)}
        runs = {"none": pre_dir}
        for mode in cell.finetune_modes:
            runs[mode] = self.layout.run_dir(cell, f"finetune-{mode}")
            events(cell.cell_id, f"fine-tune ({mode} updated)")
            trained[mode] = self.train(cell, runs[mode], cell.finetune_steps,
                                       init_from=pre_dir / "checkpoints" / "last.pt", freeze=FREEZE_OF_MODE[mode])
        exported = {}
        for mode in arm.modes:
            events(cell.cell_id, f"export ({mode})")
            exported[mode] = self.export(cell, runs[mode], cell.export_name(mode), trained[mode]["step"])
        events(cell.cell_id, "held-out reconstruction")
        heldout, eval_seconds = self.heldout_errors(cell, {m: trained[m]["step"] for m in arm.modes})
        thumb = self.layout.thumb(cell, "heldout_recon")
        thumbnail_of(self.layout.eval_dir(cell) / "heldout_reconstructions.png", thumb)
        dataset = self.dataset_record()
        cfg = cell.experiment_config(dataset_images=dataset["images"])
        extrapolation = {"arm": arm.name, "excluded": {k: list(v) for k, v in arm.exclude.items()},
                         "pretrain_fraction": arm.pretrain_fraction, "modes": list(arm.modes),
                         "pretrain_steps": cell.pretrain_steps, "finetune_steps": cell.finetune_steps,
                         "heldout_mse_x1000": heldout["heldout_mse_x1000"],
                         "heldout_images": heldout["heldout_images"],
                         "reconstructions_layout": "top row: held-out test images; then one row per mode: "
                                                   + ", ".join(arm.modes)}
        seconds = {"train": sum(t["seconds"] for t in trained.values()),
                   "export": sum(e["seconds"] for e in exported.values()), "eval": eval_seconds}
        return cell_record(cell, cfg, dataset=self._dataset_entry(dataset), factor_names=dataset["factor_names"],
                           seconds=seconds, extrapolation=extrapolation,
                           thumbnails={"reconstructions": self._relative(thumb)})

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self.layout.out))

    @staticmethod
    def _dataset_entry(dataset: dict[str, Any]) -> dict[str, Any]:
        return {k: dataset[k] for k in ("kind", "label", "path", "images")}

    def run_cell(self, cell: CellSpec) -> bool:
        """Run one cell unless its result file exists; True when it was computed here."""
        path = self.layout.cell_file(cell)
        existing = read_json(path)
        if existing is not None and existing.get("cell") == cell.cell_id:
            self.log(f"{cell.cell_id}: cell done already ({path}), skipped")
            return False
        record = self.run_main(cell) if cell.arm is None else self.run_arm(cell)
        write_json(path, record)
        self.progress.event(cell.cell_id, f"done -> {path}")
        return True

    def run(self) -> int:
        """Every selected cell, then the report; 1 if any cell failed (the others still run)."""
        started = time.perf_counter()
        failed: list[str] = []
        self.layout.out.mkdir(parents=True, exist_ok=True)
        write_json(self.layout.out / "grid.json", grid_plan(self.grid))
        from serving.experiment.server import stop_stale_server

        stop_stale_server(self.layout.work, self.layout.repository, self.log)  # even when no cell needs a server
        if any(read_json(self.layout.cell_file(c)) is None for c in self.cells):
            self.data_path()  # a missing --data stops the whole run here, not each cell
        previous = _exit_on_sigterm()
        try:
            for cell in self.cells:
                try:
                    computed = self.run_cell(cell)
                except Exception as e:  # one broken cell must not stop a grid of hours; the others still run
                    failed.append(cell.cell_id)
                    self.log(f"{cell.cell_id}: FAILED: {type(e).__name__}: {e}\n{traceback.format_exc()}")
                    computed = False
                self.progress.finished(cell.cell_id, computed)
        finally:
            self.progress.close()
            if self._server is not None:
                self._server.stop()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        report = build_report(self.layout.out, self.options.command, time.perf_counter() - started)
        self.log(f"report: {report}")
        if failed:
            self.log(f"{len(failed)} cells failed: {', '.join(failed)}; run the same command again to retry them")
            return 1
        return 0


def grid_plan(grid: GridSpec) -> dict[str, Any]:
    """``OUT/grid.json``: what the report needs to name the cells a partial run has not finished yet."""
    cells = expand(grid)
    return {"name": grid.name, "doc": grid.description, "cells": [c.cell_id for c in cells],
            "sizes": {"steps": grid.steps, "batch_size": grid.batch_size, "seeds": len(grid.seeds),
                      "estimated_minutes": round(sum(c.estimated_minutes() for c in cells), 1)}}


def _exit_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so the server is stopped (SIGKILL cannot be caught: see serving.experiment.server).
    Returns the previous handler, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def build_report(out: Path, command: str, wall_seconds: float | None = None) -> Path:
    from serving.experiment.report import build_report as build

    return build(Path(out), command=command, wall_seconds=wall_seconds)
