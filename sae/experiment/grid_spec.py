"""Experiment grids: models × seeds × dataset × steps, plus the extrapolation arms, as typed dataclasses.

A grid expands into cells (:class:`CellSpec`): main cells ``<model>-s<seed>`` and arm cells
``<model>-s<seed>-<arm>``. Each cell knows the validated :class:`ExperimentConfig` it trains and an estimate of its
cost (:class:`CostModel`), which the dry-run prints and the progress line uses until real cell times are measured.

The named grids are in :mod:`sae.experiment.named_grids`, the TOML grid files are read by
:mod:`sae.experiment.grid_toml`; :mod:`sae.experiment.grid` gathers them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from sae.core.errors import SAEError
from sae.training.config import NAMED_CONFIGS, ExperimentConfig, get_config
from sae.training.dataset_sizes import CELEBA_TRAIN_SIZE, MPI3D_TRAIN_SIZE, SHAPES3D_TRAIN_SIZE
from sae.training.models.zoo.betatcvae import BetaTCVAEConfig

FINETUNE_MODES = ("none", "encoder", "decoder", "both")  # which part a fine-tune updates ("none": not fine-tuned)
FREEZE_OF_MODE = {"encoder": "decoder", "decoder": "encoder", "both": None}  # mode -> TrainerOptions.freeze
TRAIN_FRACTION = 0.7  # dataset_splits: 70/10/20
TRAIN_SIZES = {"shapes3d": SHAPES3D_TRAIN_SIZE, "mpi3d": MPI3D_TRAIN_SIZE, "celeba": CELEBA_TRAIN_SIZE}


class GridError(SAEError, ValueError):
    """A grid, a TOML grid file or a cell selection is malformed; the message names the key or value."""


@dataclass(frozen=True)
class DatasetSpec:
    kind: str = "shapes3d"  # one of sae.training.config.DATASET_KINDS
    path: Path | None = None  # --data overrides
    procedural_images: int | None = 60_000  # without a path: render this many (shapes3d); None: --data is required
    procedural_seed: int = 0


@dataclass(frozen=True)
class EvalSpec:
    """Sizes of `sae eval` per main cell (see sae.evaluation.harness.EvalConfig) and of the arms' held-out set."""

    num_images: int = 10_000  # test images: reconstruction, FD-factor, FD-randconv
    fid_images: int = 10_000  # images per set for FID
    train_codes: int = 10_000  # encoded training images for the disentanglement metrics
    classifier_images: int = 20_000  # training images of the FD-factor classifier
    dci_regressor: str = "gbt"  # "gbt" (the authors') or "lasso" (fast)
    heldout_images: int = 10_000  # at most this many held-out test images per arm


@dataclass(frozen=True)
class ArmSpec:
    """An extrapolation arm: pretrain without some factor values, then fine-tune on everything (paper section 4.3)."""

    name: str
    exclude: dict[str, tuple[int, ...]]
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int | None = None  # pretrain + one fine-tune; None: the grid's steps
    pretrain_fraction: float = 0.8
    modes: tuple[str, ...] = FINETUNE_MODES


@dataclass(frozen=True)
class CostModel:
    """What the estimates assume (minutes per cell); measured cell times replace them in the ETA."""

    train_images_per_second: float = 320.0
    export_minutes: float = 0.3  # one export's graphs: ONNX, fp16, TorchScript, parity checks, validation
    bank_images_per_second: float = 1000.0  # ... plus the bank's ranges: every training image through the encoder
    fid_seconds_per_image: float = 0.1  # InceptionV3 on 2 CPU threads
    eval_minutes: float = 1.0  # everything of an evaluation but FID and DCI
    dci_gbt_seconds_per_code: float = 0.013  # 100 trees per factor, one core
    startup_minutes: float = 0.3  # model build, data open, server load per cell


@dataclass(frozen=True)
class GridSpec:
    name: str
    description: str
    models: tuple[str, ...]  # short names (sae12, vae, ...)
    config_suffix: str  # named config = model + suffix ("-tiny", "-shapes3d", ...)
    seeds: tuple[int, ...]
    steps: int
    batch_size: int
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    arms: tuple[ArmSpec, ...] = ()
    cost: CostModel = field(default_factory=CostModel)
    bank_range_images: int | None = None  # export: the bank's ranges over this many training images (None: all)

    def validate(self) -> GridSpec:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise GridError(f"grid name {self.name!r}: use letters, digits, '_', '.' and '-'")
        if not self.models:
            raise GridError(f"grid {self.name}: models is empty")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise GridError(f"grid {self.name}: seeds must be a non-empty list of distinct integers, got {self.seeds}")
        if self.steps < 1 or self.batch_size < 1:
            raise GridError(
                f"grid {self.name}: steps ({self.steps}) and batch_size ({self.batch_size}) must be positive"
            )
        if self.eval.dci_regressor not in ("gbt", "lasso"):
            raise GridError(f"grid {self.name}: eval.dci_regressor {self.eval.dci_regressor!r}: use gbt or lasso")
        for name in ("num_images", "fid_images", "train_codes", "classifier_images", "heldout_images"):
            if getattr(self.eval, name) < 0:
                raise GridError(f"grid {self.name}: eval.{name} must not be negative")
        if self.eval.num_images < 2 or self.eval.fid_images == 1:
            raise GridError(
                f"grid {self.name}: eval.num_images must be at least 2 and eval.fid_images 0 (no FID) or at least 2"
            )
        if self.dataset.procedural_images is not None and self.dataset.procedural_images < 100:
            raise GridError(
                f"grid {self.name}: dataset.procedural_images={self.dataset.procedural_images} is too "
                "few for train/val/test splits; use at least 100"
            )
        for model in self.models:
            config_name(self, model)
        for arm in self.arms:
            if not re.fullmatch(r"[A-Za-z0-9_]+", arm.name):
                raise GridError(f"grid {self.name}: arm name {arm.name!r}: use letters, digits and '_'")
            if not 0 < arm.pretrain_fraction < 1:
                raise GridError(f"grid {self.name}: arm {arm.name}: pretrain_fraction must be in (0, 1)")
            unknown = set(arm.modes) - set(FINETUNE_MODES)
            if unknown:
                raise GridError(
                    f"grid {self.name}: arm {arm.name}: unknown modes {sorted(unknown)}; use "
                    f"{', '.join(FINETUNE_MODES)}"
                )
            if not arm.exclude:
                raise GridError(f"grid {self.name}: arm {arm.name}: exclude is empty")
            for model in arm.models:
                config_name(self, model)
            steps = arm.steps or self.steps
            if round(steps * arm.pretrain_fraction) < 1 or steps - round(steps * arm.pretrain_fraction) < 1:
                raise GridError(
                    f"grid {self.name}: arm {arm.name}: {steps} steps leave no pretraining or no fine-tuning"
                )
        cells = expand(self)
        ids = [c.cell_id for c in cells]
        if len(set(ids)) != len(ids):
            raise GridError(f"grid {self.name}: duplicate cell ids")
        return self


def config_name(grid: GridSpec, model: str) -> str:
    name = f"{model}{grid.config_suffix}"
    if name not in NAMED_CONFIGS:
        raise GridError(f"grid {grid.name}: model {model!r} has no named config {name!r} in training/config.py")
    return name


@dataclass(frozen=True)
class CellSpec:
    grid: GridSpec
    kind: str  # "main" or "extrapolation"
    model: str
    seed: int
    arm: ArmSpec | None = None

    @property
    def cell_id(self) -> str:
        base = f"{self.model}-s{self.seed}"
        return base if self.arm is None else f"{base}-{self.arm.name}"

    @property
    def extrapolation_arm(self) -> ArmSpec:
        """The arm of an extrapolation cell; a main cell has none."""
        if self.arm is None:
            raise GridError(f"{self.cell_id}: a main cell has no extrapolation arm")
        return self.arm

    @property
    def export_base(self) -> str:
        """Triton-safe prefix of this cell's model sets (letters, digits, '_')."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.cell_id)

    def export_name(self, mode: str | None = None) -> str:
        return self.export_base if mode is None else f"{self.export_base}_{mode}"

    @property
    def config_name(self) -> str:
        return config_name(self.grid, self.model)

    @property
    def steps(self) -> int:
        return (self.arm.steps or self.grid.steps) if self.arm else self.grid.steps

    @property
    def pretrain_steps(self) -> int:
        return round(self.steps * self.arm.pretrain_fraction) if self.arm else self.steps

    @property
    def finetune_steps(self) -> int:
        """Steps of each fine-tune; the trainer counts from 0 when it starts from ``init_from``."""
        return self.steps - self.pretrain_steps if self.arm else 0

    @property
    def finetune_modes(self) -> tuple[str, ...]:
        return tuple(m for m in self.arm.modes if m != "none") if self.arm else ()

    def experiment_config(self, steps: int | None = None, dataset_images: int | None = None) -> ExperimentConfig:
        """The named config with this cell's seed, batch size and steps; β-TCVAE's N set to the train split."""
        cfg = get_config(self.config_name)
        train = dataclasses.replace(
            cfg.train,
            seed=self.seed,
            batch_size=self.grid.batch_size,
            steps=self.pretrain_steps if steps is None else steps,
        )
        model = cfg.model
        images = dataset_images or (self.grid.dataset.procedural_images if self.grid.dataset.path is None else None)
        if isinstance(model.regulariser, BetaTCVAEConfig) and images:
            model = dataclasses.replace(
                model, regulariser=dataclasses.replace(model.regulariser, dataset_size=int(images * TRAIN_FRACTION))
            )
        return dataclasses.replace(cfg, train=train, model=model).validate()

    @property
    def has_prior(self) -> bool:
        return get_config(self.config_name).model.has_prior

    def estimated_minutes(self) -> float:
        cost, ev = self.grid.cost, self.grid.eval
        train_images = (self.pretrain_steps + self.finetune_steps * len(self.finetune_modes)) * self.grid.batch_size
        minutes = cost.startup_minutes + train_images / cost.train_images_per_second / 60
        range_images = min(self.train_images(), self.grid.bank_range_images or self.train_images())
        export = cost.export_minutes + range_images / cost.bank_images_per_second / 60
        if self.arm is not None:
            return minutes + export * len(self.arm.modes) + 0.2
        fid_sets = 3 if self.has_prior else 2  # reconstructions, hybrid samples (, prior samples)
        fid = ev.fid_images * fid_sets * cost.fid_seconds_per_image / 60
        dci = ev.train_codes * cost.dci_gbt_seconds_per_code / 60 if ev.dci_regressor == "gbt" else 0.0
        return minutes + export + cost.eval_minutes + fid + dci

    def train_images(self) -> int:
        """Images of the training split (the grid's procedural data, else the dataset's published size)."""
        spec = self.grid.dataset
        if spec.path is None and spec.kind == "shapes3d" and spec.procedural_images:
            return int(spec.procedural_images * TRAIN_FRACTION)
        return TRAIN_SIZES.get(self.grid.dataset.kind, CELEBA_TRAIN_SIZE)


def expand(grid: GridSpec) -> list[CellSpec]:
    """Main cells seed by seed (a partly run grid has whole seeds), then the arms."""
    cells = [CellSpec(grid, "main", model, seed) for seed in grid.seeds for model in grid.models]
    for arm in grid.arms:
        cells += [CellSpec(grid, "extrapolation", model, seed, arm) for seed in arm.seeds for model in arm.models]
    return cells


def select(cells: list[CellSpec], pattern: str | None) -> list[CellSpec]:
    """``--cells``: comma-separated ids or globs; each must match at least one cell."""
    if not pattern:
        return cells
    wanted = [p.strip() for p in pattern.split(",") if p.strip()]
    if not wanted:
        raise GridError(f"--cells {pattern!r}: give cell ids or globs, e.g. sae12-s0,vae-*")
    for p in wanted:
        if not any(fnmatch.fnmatchcase(c.cell_id, p) for c in cells):
            raise GridError(f"--cells: {p!r} matches no cell; cells are {', '.join(c.cell_id for c in cells)}")
    return [c for c in cells if any(fnmatch.fnmatchcase(c.cell_id, p) for p in wanted)]


def parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` -> (I, N) with 0 <= I < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match:
        raise GridError(f"--shard {text!r}: expected I/N with integers, e.g. 0/4 (the first of four shards)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise GridError(f"--shard {text!r}: need N >= 1 and 0 <= I < N (I is 0-based)")
    return index, count


def shard(cells: list[CellSpec], text: str | None) -> list[CellSpec]:
    """Every N-th cell starting at I."""
    if not text:
        return cells
    index, count = parse_shard(text)
    return cells[index::count]
