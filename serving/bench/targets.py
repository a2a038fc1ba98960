"""The serving targets of a CPU `sae bench` report (python flavour, sae12-tiny), each judged met or not.

Ratios and added latencies come from the interleaved concurrency-1 cells (gRPC and in-process alternate call by
call), so they hold on a shared machine where absolute times drift. The throughput floors are the served rates
measured before the serving hops were cut (encode batch 64: 3,500 img/s; hybrid_sample batch 64: 1,500 samples/s,
at concurrency 8).
"""

from __future__ import annotations

from dataclasses import dataclass

PATHS = ("encode", "decode", "reconstruct", "hybrid_sample")


@dataclass(frozen=True)
class Target:
    key: str
    what: str
    op: str  # "<=" or ">="
    bound: float

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.bound if self.op == "<=" else value >= self.bound


TARGETS = (
    Target("hybrid_sample_b1_p50_ratio", "hybrid_sample batch 1 p50, gRPC / in-process", "<=", 1.4),
    Target("encode_b1_added_ms", "encode batch 1 p50 added by serving (ms)", "<=", 0.6),
    Target("decode_b1_added_ms", "decode batch 1 p50 added by serving (ms)", "<=", 0.6),
    *(
        Target(f"{path}_b64_c1_p50_ratio", f"{path} batch 64 concurrency 1 p50, gRPC / in-process", "<=", 1.05)
        for path in PATHS
    ),
    Target("encode_b64_c8_items_per_s", "encode batch 64 concurrency 8 served (img/s)", ">=", 3500.0),
    Target("hybrid_sample_b64_c8_items_per_s", "hybrid_sample batch 64 concurrency 8 served (samples/s)", ">=", 1500.0),
)


def _ratio(report: dict, path: str, batch: int) -> dict | None:
    for entry in report.get("ratios", {}).get(path, []):
        if entry["batch_size"] == batch and entry["grpc_concurrency"] == 1:
            return entry
    return None


def _served_rate(report: dict, path: str, batch: int, concurrency: int) -> float | None:
    for cell in report.get("grpc", {}).get("cells", []):
        if (cell["path"], cell["batch_size"], cell["concurrency"]) == (path, batch, concurrency) and cell["requests"]:
            return cell["items_per_s"]
    return None


def target_values(report: dict) -> dict[str, float | None]:
    """Each target's measured value in ``report`` (None where the grid did not measure it)."""
    values: dict[str, float | None] = {}
    hybrid = _ratio(report, "hybrid_sample", 1)
    values["hybrid_sample_b1_p50_ratio"] = None if hybrid is None else hybrid["grpc_over_in_process_p50"]
    for path in ("encode", "decode"):
        entry = _ratio(report, path, 1)
        values[f"{path}_b1_added_ms"] = None if entry is None else entry["grpc_p50_ms"] - entry["in_process_p50_ms"]
    for path in PATHS:
        entry = _ratio(report, path, 64)
        values[f"{path}_b64_c1_p50_ratio"] = None if entry is None else entry["grpc_over_in_process_p50"]
    values["encode_b64_c8_items_per_s"] = _served_rate(report, "encode", 64, 8)
    values["hybrid_sample_b64_c8_items_per_s"] = _served_rate(report, "hybrid_sample", 64, 8)
    return values


def judge(report: dict) -> list[dict]:
    """One row per target: its value in ``report`` and whether it is met (None: not measured)."""
    values = target_values(report)
    return [
        {
            "target": t.key,
            "what": t.what,
            "bound": f"{t.op} {t.bound:g}",
            "value": values[t.key],
            "met": t.met(values[t.key]),
        }
        for t in TARGETS
    ]
