"""`sae experiment`: train, export, serve and evaluate every cell of a grid, then build the report.

Stages of a main cell, each closed by a durable marker (``sae.experiment.markers``), so that a run stopped
anywhere (Ctrl-C, ``kill -9``, a reboot) and started again redoes nothing that finished:

1. train   ``WORK/runs/<cell>/train.done.json`` once the final step is reached (the trainer resumes from
           ``checkpoints/last.pt``);
2. export  ``WORK/exports/<set>.json`` with the checkpoint step (the export itself swaps folders in atomically);
3. eval    ``WORK/eval/<cell>/eval.done.json`` after ``eval.json`` is written (an interrupted eval is re-run);
4. cell    ``OUT/cells/<cell>.json``, written last, after the thumbnails.

An extrapolation cell pretrains without the held-out factor values, fine-tunes once per mode (encoder, decoder or
both updated) on the full training split, exports each, and measures reconstruction MSE on the test split's held-out
images through each set's served ``reconstruct`` (``WORK/eval/<cell>/heldout.json``).

The stages live in :mod:`sae.experiment.stages`, the folders in :mod:`sae.experiment.layout` and the plan in
:mod:`sae.experiment.plan`; this module runs the cells and builds the report.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from sae.experiment.cellfile import cell_record
from sae.experiment.grid_spec import FREEZE_OF_MODE, CellSpec, GridSpec
from sae.experiment.layout import RunnerOptions
from sae.experiment.markers import read_json, write_json
from sae.experiment.plan import grid_plan, selected_cells
from sae.experiment.progress import Progress
from sae.experiment.stages import CellStages
from sae.training.config import get_config

__all__ = ["ExperimentRunner", "build_report"]

HYBRID_THUMB_SAMPLES = 16  # the first rows of the eval's hybrid-sample grid that hold at least this many


class ExperimentRunner(CellStages):
    """Every selected cell of a grid through its stages, then the report."""

    def __init__(self, grid: GridSpec, options: RunnerOptions):
        super().__init__(grid, options)
        self.cells = selected_cells(grid, options)
        self.progress = Progress({c.cell_id: c.estimated_minutes() for c in self.cells})

    # ------------------------------------------------------------------------------------------------ cells
    def run_main(self, cell: CellSpec) -> dict[str, Any]:
        from sae.experiment.thumbs import read_png, thumbnail_of, write_thumbnail

        events = self.progress.event
        run_dir = self.layout.run_dir(cell)
        events(cell.cell_id, "train")
        trained = self.train(cell, run_dir, cell.steps)
        events(cell.cell_id, "export")
        exported = self.export(cell, run_dir, cell.export_name(), trained["step"])
        events(cell.cell_id, "eval")
        result, eval_seconds = self.evaluate(cell, cell.export_name(), trained["step"])
        figures = {
            k: self.layout.eval_dir(cell) / v["path"]
            for k, v in (result.get("figures") or {}).items()
            if isinstance(v, dict) and isinstance(v.get("path"), str)
        }
        thumbs: dict[str, str | None] = {}
        for key, figure in (
            ("traversals", "traversals"),
            ("reconstructions", "reconstructions"),
            ("prior_samples", "prior_samples"),
        ):
            if figure in figures and figures[figure].is_file():
                thumbnail_of(figures[figure], self.layout.thumb(cell, key))
                thumbs[key] = self._relative(self.layout.thumb(cell, key))
        if "hybrid_samples" in figures and figures["hybrid_samples"].is_file():
            grid = read_png(figures["hybrid_samples"])
            tile = get_config(cell.config_name).model.backbone.image_size + 2  # image_grid's 2 px padding
            rows = -(-HYBRID_THUMB_SAMPLES // ((grid.shape[1] - 2) // tile))
            write_thumbnail(self.layout.thumb(cell, "hybrid"), grid[: 2 + rows * tile])
            thumbs["hybrid_samples"] = self._relative(self.layout.thumb(cell, "hybrid"))
        dataset = self.dataset_record()
        cfg = cell.experiment_config(dataset_images=dataset["images"])
        return cell_record(
            cell,
            cfg,
            dataset=self._dataset_entry(dataset),
            factor_names=dataset["factor_names"],
            seconds={"train": trained["seconds"], "export": exported["seconds"], "eval": eval_seconds},
            eval_result=result,
            thumbnails=thumbs,
        )

    def run_arm(self, cell: CellSpec) -> dict[str, Any]:
        from sae.experiment.thumbs import thumbnail_of

        events = self.progress.event
        arm = cell.extrapolation_arm
        pre_dir = self.layout.run_dir(cell, "pretrain")
        events(cell.cell_id, f"pretrain without {dict(arm.exclude)}")
        trained = {"none": self.train(cell, pre_dir, cell.pretrain_steps, exclude=arm.exclude)}
        runs = {"none": pre_dir}
        for mode in cell.finetune_modes:
            runs[mode] = self.layout.run_dir(cell, f"finetune-{mode}")
            events(cell.cell_id, f"fine-tune ({mode} updated)")
            trained[mode] = self.train(
                cell,
                runs[mode],
                cell.finetune_steps,
                init_from=pre_dir / "checkpoints" / "last.pt",
                freeze=FREEZE_OF_MODE[mode],
            )
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
        extrapolation = {
            "arm": arm.name,
            "excluded": {k: list(v) for k, v in arm.exclude.items()},
            "pretrain_fraction": arm.pretrain_fraction,
            "modes": list(arm.modes),
            "pretrain_steps": cell.pretrain_steps,
            "finetune_steps": cell.finetune_steps,
            "heldout_mse_x1000": heldout["heldout_mse_x1000"],
            "heldout_images": heldout["heldout_images"],
            "reconstructions_layout": "top row: held-out test images; then one row per mode: " + ", ".join(arm.modes),
        }
        seconds = {
            "train": sum(t["seconds"] for t in trained.values()),
            "export": sum(e["seconds"] for e in exported.values()),
            "eval": eval_seconds,
        }
        return cell_record(
            cell,
            cfg,
            dataset=self._dataset_entry(dataset),
            factor_names=dataset["factor_names"],
            seconds=seconds,
            extrapolation=extrapolation,
            thumbnails={"reconstructions": self._relative(thumb)},
        )

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
        from sae.experiment.server import stop_stale_server

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


def _exit_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so the server is stopped (SIGKILL cannot be caught: see sae.experiment.server).
    Returns the previous handler, or None off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def build_report(out: Path, command: str, wall_seconds: float | None = None) -> Path:
    from sae.experiment.report import build_report as build

    return build(Path(out), command=command, wall_seconds=wall_seconds)
