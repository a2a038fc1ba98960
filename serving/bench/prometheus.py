"""Server-side times from Triton's Prometheus endpoint, as deltas of its cumulative counters around a cell."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

# Triton's per-model counters (all cumulative; durations in microseconds) -> the names used in the report
COUNTERS = {
    "nv_inference_request_success": "requests",
    "nv_inference_request_failure": "failures",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}

Counters = dict[str, dict[str, float]]  # model -> report name -> value


def parse_counters(text: str) -> Counters:
    """Sum each counter over its other labels (version, failure reason) per model."""
    counters: Counters = defaultdict(lambda: dict.fromkeys(COUNTERS.values(), 0.0))
    for family in text_string_to_metric_families(text):
        key = COUNTERS.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            if sample.name.endswith(("_created",)) or "model" not in sample.labels:
                continue
            counters[sample.labels["model"]][key] += float(sample.value)
    return dict(counters)


def scrape(metrics_url: str, timeout_s: float = 5.0) -> Counters:
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
        return parse_counters(response.read().decode("utf-8"))


def _finished(counters: Counters, model: str) -> float:
    return counters.get(model, {}).get("requests", 0.0) + counters.get(model, {}).get("failures", 0.0)


def scrape_settled(metrics_url: str, models: list[str], interval_s: float = 0.05, wait_s: float = 2.0) -> Counters:
    """Scrape until the finished-request counts of ``models`` hold still between two scrapes ``interval_s`` apart
    (or ``wait_s`` passed), so that requests sent before (warm-ups, the previous cell) are not counted late into the
    next cell's delta."""
    deadline = time.monotonic() + wait_s
    last = scrape(metrics_url)
    while True:
        time.sleep(interval_s)
        now = scrape(metrics_url)
        if all(_finished(now, m) == _finished(last, m) for m in models) or time.monotonic() > deadline:
            return now
        last = now


def scrape_after(metrics_url: str, before: Counters, models: list[str], requests: int, wait_s: float = 2.0) -> Counters:
    """Scrape until every model of ``models`` shows ``requests`` more finished requests than ``before``, or
    ``wait_s`` passed. Triton may count a request just after its response went out, and an ensemble's steps finish
    in their own time: the client having its answers does not mean every counter has moved yet."""
    deadline = time.monotonic() + wait_s
    while True:
        after = scrape(metrics_url)
        if all(_finished(after, m) - _finished(before, m) >= requests for m in models) or time.monotonic() > deadline:
            return after
        time.sleep(0.02)


def server_times(before: Counters, after: Counters, models: list[str]) -> dict[str, dict]:
    """Per model: the counters' deltas, and mean milliseconds per request of queue, compute and the whole request
    (for an ensemble, the whole request includes its steps; its own queue and compute are near zero)."""
    report = {}
    zero = dict.fromkeys(COUNTERS.values(), 0.0)
    for model in models:
        delta = {k: after.get(model, zero)[k] - before.get(model, zero)[k] for k in COUNTERS.values()}
        requests = delta["requests"]

        def per_request_ms(key: str) -> float | None:
            return delta[key] / requests / 1e3 if requests else None

        report[model] = {
            "requests": int(requests),
            "failures": int(delta["failures"]),
            "executions": int(delta["executions"]),
            "inferences": int(delta["inferences"]),
            "mean_batch": delta["inferences"] / delta["executions"] if delta["executions"] else None,
            "executions_per_request": delta["executions"] / requests if requests else None,
            "queue_ms": per_request_ms("queue_us"),
            "compute_input_ms": per_request_ms("compute_input_us"),
            "compute_infer_ms": per_request_ms("compute_infer_us"),
            "compute_output_ms": per_request_ms("compute_output_us"),
            "request_ms": per_request_ms("request_us"),
        }
    return report
