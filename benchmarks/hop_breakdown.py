"""Where the time of one small request goes: client, gRPC, Triton's queue, the python-backend stub, ONNX Runtime.

    python benchmarks/hop_breakdown.py --repo model_repository --out out/bench/hops.json [--perf-analyzer PA]

For each model (encode and decode) and batch size, in one server: ``--requests`` tritonclient calls one at a time
(a tenth of them above batch 1), alternating call by call with the in-process ONNX Runtime call on the same file and
session settings, so that both see the same load; the server's own per-request means over exactly those calls from
``get_inference_statistics`` (queue, compute input, compute infer, compute output; for the python backend "compute
infer" is the stub round trip plus ``execute()``); and perf_analyzer's view where its binary is
given. The split written out:

* client + gRPC: client mean - server request mean (tritonclient's request building, protobuf, the HTTP/2 hop);
* queue and compute input/output: Triton's own;
* stub + python: compute infer - the in-process ONNX Runtime mean (IPC to the stub, the model's checks and copies);
* ONNX Runtime: the in-process mean.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sae.serving.bench.grpc_runner import GrpcRunner  # noqa: E402
from sae.serving.bench.inprocess import load_onnx_model  # noqa: E402
from sae.serving.bench.perf_analyzer import count_windows_args, parse_csv, target_args  # noqa: E402
from sae.serving.bench.served import WireShapes  # noqa: E402
from sae.serving.bench.workloads import path_inputs  # noqa: E402

STAT_KEYS = ("queue", "compute_input", "compute_infer", "compute_output", "success")


def server_stats(client, model: str) -> dict[str, tuple[int, int]]:
    """(count, total ns) per duration of ``model``'s inference statistics."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    return {k: (int(stats.get(k, {}).get("count", 0)), int(stats.get(k, {}).get("ns", 0))) for k in STAT_KEYS}


def per_request_ms(before: dict, after: dict) -> dict[str, float]:
    out = {}
    for key in STAT_KEYS:
        count = after[key][0] - before[key][0]
        out[f"{'request' if key == 'success' else key}_ms"] = (
            (after[key][1] - before[key][1]) / count / 1e6 if count else float("nan")
        )
    return out


def timed_pair(remote, local, requests: int) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds of ``requests`` calls of each, alternating call by call (both see the same machine load)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(requests):
        for side, call in enumerate((remote, local)):
            t0 = time.perf_counter()
            call()
            times[side].append(time.perf_counter() - t0)
    return np.asarray(times[0]) * 1e3, np.asarray(times[1]) * 1e3


def perf_analyzer_cell(binary: Path, url: str, model: str, batch: int, requests: int) -> dict:
    out = Path(f"/tmp/sae-hops-{model}-{batch}.csv")
    cmd = [
        *target_args(binary, url, model),
        "-b",
        str(batch),
        "--concurrency-range",
        "1",
        *count_windows_args(requests),
        "--input-data",
        "zero",
        "-f",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout)[-500:]}
    text = out.read_text()
    out.unlink(missing_ok=True)
    row = parse_csv(text)
    header, values = text.splitlines()[0].split(","), text.splitlines()[1].split(",")
    fields = {h: float(v) / 1e3 for h, v in zip(header, values) if h not in ("Concurrency", "Inferences/Second")}
    return {**row, "columns_ms": fields}


def measure(repo: Path, url: str, batch_sizes: list[int], requests: int, perf_analyzer: Path | None) -> list[dict]:
    rows = []
    with GrpcRunner(url) as grpc:
        client = grpc.client(0)
        encode_cfg = client.get_model_config("encode", as_json=True)["config"]
        decode_cfg = client.get_model_config("decode", as_json=True)["config"]
        shapes = WireShapes(
            int(encode_cfg["input"][0]["dims"][0]),
            int(encode_cfg["input"][0]["dims"][1]),
            int(decode_cfg["input"][0]["dims"][0]),
        )
        for model in ("encode", "decode"):
            local = load_onnx_model(repo, model)
            for batch in batch_sizes:
                inputs = path_inputs(model, batch, shapes, seed=0)
                (array,) = inputs.values()
                call = grpc.calls(model, inputs, 1)[0]
                n = requests if batch == 1 else max(requests // 10, 10)
                timed_pair(call, lambda a=array: local.run(a), 10)
                before = server_stats(client, model)
                remote, ort = timed_pair(call, lambda a=array: local.run(a), n)
                time.sleep(0.2)  # the statistics of the last response may land just after it
                server = per_request_ms(before, server_stats(client, model))
                row = {
                    "model": model,
                    "batch_size": batch,
                    "requests": n,
                    "client_p50_ms": float(np.median(remote)),
                    "client_mean_ms": float(remote.mean()),
                    "in_process_p50_ms": float(np.median(ort)),
                    "in_process_mean_ms": float(ort.mean()),
                    "server": server,
                }
                row["split_ms"] = {
                    "client_and_grpc": row["client_mean_ms"] - server["request_ms"],
                    "queue": server["queue_ms"],
                    "compute_input": server["compute_input_ms"],
                    "stub_and_python": server["compute_infer_ms"] - row["in_process_mean_ms"],
                    "onnx_runtime": row["in_process_mean_ms"],
                    "compute_output": server["compute_output_ms"],
                }
                if perf_analyzer is not None:
                    row["perf_analyzer"] = perf_analyzer_cell(perf_analyzer, url, model, batch, n)
                rows.append(row)
                print(
                    json.dumps(
                        {k: row[k] for k in ("model", "batch_size", "client_p50_ms", "in_process_p50_ms")}
                        | {"split_ms": {k: round(v, 3) for k, v in row["split_ms"].items()}}
                    ),
                    flush=True,
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"))
    p.add_argument("--url", default=None, help="a running server on --repo (default: start one)")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--perf-analyzer", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("out/bench/hops.json"))
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    if args.url:
        rows = measure(args.repo, args.url, batches, args.requests, args.perf_analyzer)
    else:
        from sae.serving.triton import ServerConfig, TritonServer

        args.out.parent.mkdir(parents=True, exist_ok=True)
        with TritonServer(ServerConfig(repository=args.repo), log_path=args.out.with_suffix(".log")) as server:
            rows = measure(args.repo, server.grpc_url, batches, args.requests, args.perf_analyzer)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repo": str(args.repo), "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
