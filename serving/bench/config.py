"""What one `sae bench` run measures: which paths, batch sizes and concurrencies, and how long each cell may run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from sae.core import wire
from sae.core.errors import SAEError
from sae.serving.bench.device import check_device


class BenchConfigError(SAEError, ValueError):
    """A bench setting out of range (cell limits, paths, batch sizes, concurrency, budget, model name, a list flag
    that is not integers, fewer than two repositories to compare); the message names the setting."""


PATHS = (wire.ENCODE, wire.DECODE, wire.RECONSTRUCT, wire.HYBRID_SAMPLE)


@dataclass(frozen=True)
class CellLimits:
    """Bounds of one measured cell (one path x batch size x concurrency). A cell stops issuing requests when either
    bound is reached; requests already in flight finish and are counted."""

    max_seconds: float = 2.0
    max_requests: int = 100
    warmup_requests: int = 2  # per path and batch size and transport, before its first cell (at least 1); not counted
    # Cells above concurrency 1 whose batch size x concurrency exceeds this are skipped: they would only measure
    # a saturated queue, for tens of seconds each on a small CPU machine.
    max_in_flight_items: int = 1024

    def __post_init__(self) -> None:
        if not self.max_seconds > 0:
            raise BenchConfigError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.max_requests < 1:
            raise BenchConfigError(f"max_requests must be at least 1, got {self.max_requests}")
        if self.warmup_requests < 0:
            raise BenchConfigError(f"warmup_requests must be non-negative, got {self.warmup_requests}")
        if self.max_in_flight_items < 1:
            raise BenchConfigError(f"max_in_flight_items must be at least 1, got {self.max_in_flight_items}")


@dataclass(frozen=True)
class BenchConfig:
    url: str  # gRPC host:port of a running server
    metrics_url: str | None = None  # Triton's Prometheus endpoint (http://host:8002/metrics); None: no server times
    repo: Path | None = None  # the exported repository whose model.onnx files run in-process; None: gRPC only
    model: str = ""  # the model's name prefix given to `sae export --name` ("" = no prefix)
    paths: tuple[str, ...] = PATHS
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    concurrency: tuple[int, ...] = (1, 4, 16)
    limits: CellLimits = field(default_factory=CellLimits)
    perf_analyzer: Path | None = None  # the perf_analyzer binary; None: look on PATH
    use_perf_analyzer: bool = True
    perf_analyzer_budget_s: float = 120.0  # all perf_analyzer runs together
    seed: int = 0  # of the synthetic inputs (images, latents) and of every hybrid_sample request
    device: str = "cpu"  # where the in-process baseline runs (and the server's instances, when bench starts one)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(self.paths))
        object.__setattr__(self, "batch_sizes", tuple(int(b) for b in self.batch_sizes))
        object.__setattr__(self, "concurrency", tuple(int(c) for c in self.concurrency))
        if self.repo is not None:
            object.__setattr__(self, "repo", Path(self.repo))
        unknown = [p for p in self.paths if p not in PATHS]
        if unknown or not self.paths:
            raise BenchConfigError(f"paths must be a non-empty subset of {', '.join(PATHS)}; got {list(self.paths)}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise BenchConfigError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}")
        if not self.concurrency or min(self.concurrency) < 1:
            raise BenchConfigError(f"concurrency levels must be positive integers, got {list(self.concurrency)}")
        if self.perf_analyzer_budget_s < 0:
            raise BenchConfigError(f"perf_analyzer_budget_s must be non-negative, got {self.perf_analyzer_budget_s}")
        check_device(self.device)
        if self.model and not self.model.replace("_", "").replace("-", "").isalnum():
            raise BenchConfigError(f"model name {self.model!r} may hold letters, digits, '-' and '_' only")

    def model_name(self, path: str) -> str:
        """The served model of ``path`` under this config's prefix (the wire contract: ``NAME_encode``, ...)."""
        return wire.served_name(self.model, path)


def quick(config: BenchConfig) -> BenchConfig:
    """A CI-sized grid: two batch sizes, two concurrency levels, half a second or 20 requests per cell."""
    return replace(
        config,
        batch_sizes=(1, 8),
        concurrency=(1, 4),
        perf_analyzer_budget_s=30.0,
        limits=CellLimits(max_seconds=0.5, max_requests=20, warmup_requests=1),
    )


def parse_int_list(text: str, what: str) -> tuple[int, ...]:
    """``"1,8,64"`` -> (1, 8, 64), with an error that names the argument."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BenchConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchConfigError(f"{what} must list at least one integer, got {text!r}")
    return values
