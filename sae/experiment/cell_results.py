"""Reading the files `sae experiment` leaves behind: one ``cells/<cell_id>.json`` per finished cell, and ``grid.json``.

The cell file is the contract between the runner and the report builder (schema 1). Reading checks what the report
uses and nothing more; a file that does not parse or does not follow the schema raises one ``CellFileError`` that
names the file and the key. Non-finite numbers are refused too: every number in the report comes from these files.

Optional keys (absent in older cells; the report says what their absence leaves unjudged):

* ``gate`` (main cells): the gate's numbers (``sae.experiment.gate``) on the cell's own test images: ``bce``,
  ``mse``, ``oracle_bce``, ``oracle_mse``, ``floor_bce`` and ``accuracy`` (factor -> test accuracy from the codes).
* ``traversal_response`` (main cells): per latent variable, the mean image change when the decoder traverses that
  variable (the authors' response metric), one number per variable.
* ``extrapolation.seen_mse_x1000``: the in-distribution control, the same fine-tuned models scored on test images
  whose factor values were seen in pretraining (fine-tune mode -> MSE per pixel x 1000).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, overload

from sae.core.errors import SAEError

__all__ = [
    "SCHEMA",
    "MAIN_METRIC_KEYS",
    "FINE_TUNE_MODES",
    "CellFileError",
    "Extrapolation",
    "CellResult",
    "GridPlan",
    "read_cell",
    "read_cells",
    "read_grid_plan",
]

SCHEMA = 1
MAIN_METRIC_KEYS = (
    "bce",
    "mse",
    "fid_reconstruction",
    "fid_hybrid",
    "fid_prior",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "mig",
    "irs",
    "sap",
    "modularity",
    "explicitness",
)
FINE_TUNE_MODES = ("none", "encoder", "decoder", "both")
KINDS = ("main", "extrapolation")


class CellFileError(SAEError, ValueError):
    """A cell or grid file that cannot be read as the schema says; the message names the file."""


@dataclass(frozen=True)
class Extrapolation:
    arm: str
    heldout_mse_x1000: dict[str, float]  # fine-tune mode -> held-out MSE per pixel x 1000 (the modes measured)
    excluded: dict[str, list[Any]]
    heldout_images: int | None
    seen_mse_x1000: dict[str, float] = field(default_factory=dict)  # the in-distribution control, when measured


@dataclass(frozen=True)
class CellResult:
    """The parts of one cell file the report uses."""

    path: Path
    cell: str
    grid: str
    kind: str  # "main" or "extrapolation"
    model: str
    family: str
    has_prior: bool
    seed: int
    dataset_label: str
    commit: str
    machine: str
    torch: str | None
    seconds: dict[str, float]
    draw_mode: str | None
    metrics: dict[str, float | None] | None  # main cells: MAIN_METRIC_KEYS; None where not measured or no prior
    fid_images: int | None
    dci_regressor: str | None
    dci_importance: list[list[float]] | None  # [latent dims][factors]
    factor_names: list[str] | None
    variable_of_dim: list[int] | None
    extrapolation: Extrapolation | None
    thumbnails: dict[str, str | None] = field(default_factory=dict)
    gate: dict[str, Any] | None = None  # bce, mse, oracle_bce, oracle_mse, floor_bce, accuracy {factor: value}
    traversal_response: list[float] | None = None  # per latent variable: the decoder's image change

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds.values()))


@dataclass(frozen=True)
class GridPlan:
    """``grid.json``: the grid's name, its docstring, the planned cell ids and its sizing text; every field optional."""

    name: str | None
    doc: str | None
    planned_cells: tuple[str, ...] | None
    sizing: str | None


class _Reader:
    """Typed access to one parsed JSON object; every failure names the file and the key path."""

    def __init__(self, path: Path, data: Any, where: str = ""):
        self.path, self.data, self.where = path, data, where
        if not isinstance(data, dict):
            self.fail(f"expected a JSON object, got {type(data).__name__}")

    def fail(self, message: str) -> NoReturn:
        place = f" at {self.where!r}" if self.where else ""
        raise CellFileError(f"{self.path}: {message}{place}")

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, types: tuple[type, ...], *, nullable: bool = False) -> Any:
        if key not in self.data:
            raise CellFileError(f"{self.path}: missing key {self._key(key)!r}")
        value = self.data[key]
        if value is None and nullable:
            return None
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise CellFileError(f"{self.path}: {self._key(key)!r} must be {wanted}, got {value!r:.60}")
        return value

    def optional(self, key: str, types: tuple[type, ...]) -> Any:
        """A key the report can do without: None when absent or null."""
        return self.get(key, types, nullable=True) if key in self.data else None

    @overload
    def number(self, key: str, *, nullable: Literal[False] = False) -> float: ...

    @overload
    def number(self, key: str, *, nullable: bool) -> float | None: ...

    def number(self, key: str, *, nullable: bool = False) -> float | None:
        value = self.get(key, (int, float), nullable=nullable)
        if value is None:
            return None
        if not math.isfinite(value):
            raise CellFileError(f"{self.path}: {self._key(key)!r} must be a finite number, got {value!r}")
        return float(value)

    @overload
    def sub(self, key: str, *, nullable: Literal[False] = False) -> _Reader: ...

    @overload
    def sub(self, key: str, *, nullable: bool) -> _Reader | None: ...

    def sub(self, key: str, *, nullable: bool = False) -> _Reader | None:
        value = self.get(key, (dict,), nullable=nullable)
        return None if value is None else _Reader(self.path, value, self._key(key))


def _load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CellFileError(f"{path}: cannot be read: {e}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CellFileError(f"{path}: not valid JSON: {e}") from e


def _matrix(reader: _Reader, key: str) -> list[list[float]] | None:
    rows = reader.get(key, (list,), nullable=True)
    if rows is None:
        return None
    if not rows or not all(isinstance(r, list) and r for r in rows) or len({len(r) for r in rows}) != 1:
        reader.fail(f"{key!r} must be a non-empty rectangular list of lists")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for r in rows for v in r):
        reader.fail(f"{key!r} must hold finite numbers only")
    return [[float(v) for v in r] for r in rows]


def _metrics(reader: _Reader, has_prior: bool) -> dict[str, float | None]:
    """Every metric key must be there; a null value is a measurement the cell did not get (the report names it)."""
    metrics = {key: reader.number(key, nullable=True) for key in MAIN_METRIC_KEYS}
    if metrics["fid_prior"] is not None and not has_prior:
        reader.fail("'fid_prior' must be null for a model without a prior (has_prior is false)")
    return metrics


def _extrapolation(reader: _Reader) -> Extrapolation:
    """The fine-tune modes an arm ran (any of FINE_TUNE_MODES; a null or absent mode was not measured)."""
    mse = reader.sub("heldout_mse_x1000")
    unknown = sorted(set(mse.data) - set(FINE_TUNE_MODES))
    if unknown:
        mse.fail(f"unknown fine-tune mode(s) {', '.join(unknown)} (known: {', '.join(FINE_TUNE_MODES)})")
    values = {mode: mse.number(mode, nullable=True) for mode in FINE_TUNE_MODES if mode in mse.data}
    seen: dict[str, float] = {}
    if reader.data.get("seen_mse_x1000") is not None:
        control = reader.sub("seen_mse_x1000")
        unknown = sorted(set(control.data) - set(FINE_TUNE_MODES))
        if unknown:
            control.fail(f"unknown fine-tune mode(s) {', '.join(unknown)} (known: {', '.join(FINE_TUNE_MODES)})")
        seen = {
            mode: v
            for mode in FINE_TUNE_MODES
            if mode in control.data and (v := control.number(mode, nullable=True)) is not None
        }
    return Extrapolation(
        arm=reader.get("arm", (str,)),
        heldout_mse_x1000={mode: v for mode, v in values.items() if v is not None},
        excluded=reader.optional("excluded", (dict,)) or {},
        heldout_images=reader.optional("heldout_images", (int,)),
        seen_mse_x1000=seen,
    )


GATE_NUMBERS = ("bce", "mse", "oracle_bce", "oracle_mse", "floor_bce")


def _gate(reader: _Reader) -> dict[str, Any] | None:
    """The optional ``gate`` object of a main cell: its five numbers and the per-factor accuracy."""
    if reader.data.get("gate") is None:
        return None
    gate = reader.sub("gate")
    found: dict[str, Any] = {key: gate.number(key) for key in GATE_NUMBERS}
    accuracy = gate.sub("accuracy")
    found["accuracy"] = {str(k): accuracy.number(k) for k in accuracy.data}
    return found


def _vector(reader: _Reader, key: str) -> list[float] | None:
    values = reader.optional(key, (list,))
    if values is None:
        return None
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values
    ):
        reader.fail(f"{key!r} must be a non-empty list of finite numbers >= 0")
    return [float(v) for v in values]


def read_cell(path: Path) -> CellResult:
    """One cell file, checked against schema 1."""
    path = Path(path)
    r = _Reader(path, _load_json(path))
    schema = r.get("schema", (int,))
    if schema != SCHEMA:
        r.fail(f"schema {schema} is not supported (this report reads schema {SCHEMA})")
    cell = r.get("cell", (str,))
    if path.suffix == ".json" and path.stem != cell:
        r.fail(f"the file name says cell {path.stem!r} but the file holds cell {cell!r}")
    kind = r.get("kind", (str,))
    if kind not in KINDS:
        r.fail(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    has_prior = r.get("has_prior", (bool,))
    dataset = r.sub("dataset")
    seconds = r.sub("seconds")
    metrics_reader = r.sub("metrics") if kind == "main" else None  # extrapolation cells: main metrics not read
    metrics = _metrics(metrics_reader, has_prior) if metrics_reader else None
    importance = _matrix(r, "dci_importance") if "dci_importance" in r.data else None
    factor_names = r.optional("factor_names", (list,))
    variable_of_dim = r.optional("variable_of_dim", (list,))
    if importance is not None:
        if factor_names is None or len(factor_names) != len(importance[0]):
            r.fail("'factor_names' must name every column of 'dci_importance'")
        if (
            variable_of_dim is None
            or len(variable_of_dim) != len(importance)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in variable_of_dim)
        ):
            r.fail("'variable_of_dim' must give a variable index (int >= 0) for every row of 'dci_importance'")
    extrapolation = _extrapolation(r.sub("extrapolation")) if kind == "extrapolation" else None
    thumbs = r.optional("thumbnails", (dict,))
    if thumbs and not all(v is None or isinstance(v, str) for v in thumbs.values()):
        r.fail("'thumbnails' must map names to relative paths or null")
    return CellResult(
        path=path,
        cell=cell,
        grid=r.get("grid", (str,)),
        kind=kind,
        model=r.get("model", (str,)),
        family=r.get("family", (str,)),
        has_prior=has_prior,
        seed=r.get("seed", (int,)),
        dataset_label=dataset.get("label", (str,)),
        commit=r.get("commit", (str,)),
        machine=r.get("machine", (str,)),
        torch=r.optional("torch", (str,)),
        seconds={k: seconds.number(k) for k in seconds.data},
        draw_mode=r.optional("draw_mode", (str,)),
        metrics=metrics,
        fid_images=metrics_reader.optional("fid_images", (int,)) if metrics_reader else None,
        dci_regressor=metrics_reader.optional("dci_regressor", (str,)) if metrics_reader else None,
        dci_importance=importance,
        factor_names=factor_names,
        variable_of_dim=variable_of_dim,
        extrapolation=extrapolation,
        thumbnails=dict(thumbs or {}),
        gate=_gate(r) if kind == "main" else None,
        traversal_response=_vector(r, "traversal_response") if kind == "main" else None,
    )


def read_cells(cells_dir: Path) -> list[CellResult]:
    """Every ``*.json`` in ``cells_dir`` (none if the folder does not exist), sorted by cell id.

    Two files for the same model, seed and arm are refused: the report would have to pick one.
    """
    cells_dir = Path(cells_dir)
    cells = [read_cell(p) for p in sorted(cells_dir.glob("*.json"))] if cells_dir.is_dir() else []
    seen: dict[tuple, CellResult] = {}
    for c in cells:
        key = (c.kind, c.model, c.seed, c.extrapolation.arm if c.extrapolation else None)
        if key in seen:
            raise CellFileError(
                f"{c.path}: same model, seed and arm as {seen[key].path} "
                f"({c.model}, seed {c.seed}{', arm ' + key[3] if key[3] else ''})"
            )
        seen[key] = c
    grids = sorted({c.grid for c in cells})
    if len(grids) > 1:
        first = {g: next(c.path for c in cells if c.grid == g) for g in grids}
        raise CellFileError(
            f"{cells_dir}: cells of several grids in one folder: "
            + ", ".join(f"{g} ({p.name})" for g, p in first.items())
        )
    return cells


def read_grid_plan(path: Path) -> GridPlan | None:
    """``grid.json`` if it exists: ``name``, ``doc`` (or ``docstring``), ``cells`` (ids, or objects with a ``cell``
    key) and ``sizing`` (text) or ``sizes`` (an object, rendered as ``key: value`` pairs); each may be absent."""
    path = Path(path)
    if not path.exists():
        return None
    r = _Reader(path, _load_json(path))
    planned = None
    if r.data.get("cells") is not None:
        entries = r.get("cells", (list,))
        planned = tuple(e["cell"] if isinstance(e, dict) and isinstance(e.get("cell"), str) else e for e in entries)
        if not all(isinstance(e, str) for e in planned):
            r.fail("'cells' must list cell ids (strings) or objects with a string 'cell'")
    doc_key = "doc" if "doc" in r.data else "docstring"
    sizing = r.optional("sizing", (str,))
    if sizing is None and r.data.get("sizes") is not None:
        sizes = r.get("sizes", (dict, str))
        sizing = sizes if isinstance(sizes, str) else ", ".join(f"{k}: {v}" for k, v in sizes.items())
    return GridPlan(
        name=r.optional("name", (str,)), doc=r.optional(doc_key, (str,)), planned_cells=planned, sizing=sizing
    )
