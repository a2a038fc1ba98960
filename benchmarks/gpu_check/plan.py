"""What one GPU check measures (:class:`CheckPlan`: the full one on CUDA, the tiny one on the CPU) and its time
budget (:class:`Clock`)."""

from __future__ import annotations

import dataclasses
import time

from sae.serving.bench.config import CellLimits

MODES = ("eager", "compiled", "cuda_graph")
PATHS = ("decode", "hybrid_sample")


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """What one run measures and how long it may take."""

    device: str  # "cuda" or "cpu"
    train_config: str
    train_batch_size: int
    train_warmup: int
    train_steps: int
    train_images: int  # procedural images rendered for the training section
    model_config: str  # the model whose decoder is timed in-process and served
    batch_sizes: tuple[int, ...]
    cell: CellLimits  # per latency cell
    served_concurrency: int
    precision: str  # "bf16" (autocast) on CUDA, "fp32" on the CPU
    budget_s: float  # the whole run; a section that would start after it is skipped
    served: bool = True

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def full_plan(budget_s: float = 450.0) -> CheckPlan:
    return CheckPlan(
        device="cuda",
        train_config="sae12-shapes3d",
        train_batch_size=128,
        train_warmup=20,
        train_steps=100,
        train_images=2048,
        model_config="sae12-shapes3d",
        batch_sizes=(1, 64, 256),
        cell=CellLimits(max_seconds=2.0, max_requests=200, warmup_requests=5),
        served_concurrency=8,
        precision="bf16",
        budget_s=budget_s,
    )


def cpu_tiny_plan(budget_s: float = 120.0) -> CheckPlan:
    return CheckPlan(
        device="cpu",
        train_config="sae12-tiny",
        train_batch_size=8,
        train_warmup=1,
        train_steps=2,
        train_images=256,
        model_config="sae12-tiny",
        batch_sizes=(1, 4),
        cell=CellLimits(max_seconds=0.3, max_requests=5, warmup_requests=1),
        served_concurrency=2,
        precision="fp32",
        budget_s=budget_s,
    )


class Clock:
    def __init__(self, budget_s: float):
        self.started = time.monotonic()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over(self) -> str | None:
        """A skip reason once the budget is spent, else None."""
        if self.elapsed() > self.budget_s:
            return f"time budget of {self.budget_s:.0f} s spent ({self.elapsed():.0f} s elapsed)"
        return None


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
