"""Measure the batching settings of one served graph model (``decode`` by default), one change at a time.

Triton's optimisation guide tunes a model by starting from an empty ``dynamic_batching { }`` and changing one value
at a time. Here every variant is a copy of the model with one setting changed, all loaded side by side in ONE server,
and requests go to the variants in interleaved rounds, so machine load (other processes) hits every variant alike
and the ratios between variants are fair even where absolute figures drift.

Per variant: the first request after load (cold), a lone batch-1 request's latency (one client, sequential), and
batch-1 requests from C concurrent clients (throughput and latency); plus the server's own queue/compute split
(``get_inference_statistics``). Fixed request counts, JSON out::

    python benchmarks/tune_batching.py --repo model_repository --model decode --out out/tune/decode.json

The figures and the choices made from them are in README.md, "Serving configuration". For full latency tables
(all paths, perf_analyzer, in-process baselines) use ``sae bench``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass(frozen=True)
class Variant:
    name: str
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    instances: int = 1
    intra_op_threads: int = 2
    warmup: bool = False


PASSES = {
    # pass 1: from an empty dynamic_batching { } (1 instance, 2 ONNX Runtime threads), one change per variant
    1: (
        Variant("no_dynamic_batching", dynamic_batching=False),
        Variant("dynamic_batching_empty"),
        Variant("queue_delay_500us", max_queue_delay_us=500),
        Variant("queue_delay_2000us", max_queue_delay_us=2000),
        Variant("preferred_8_16", preferred_batch_sizes=(8, 16)),
        Variant("instances_2_threads_1", instances=2, intra_op_threads=1),
        Variant("instances_1_threads_1", intra_op_threads=1),
        Variant("warmup_batch_1_8", warmup=True),
    ),
    # pass 2: from pass 1's best (2 instances of 1 thread), one change per variant again
    2: (
        Variant("i2_t1", instances=2, intra_op_threads=1),
        Variant("i2_t1_queue_delay_500us", instances=2, intra_op_threads=1, max_queue_delay_us=500),
        Variant("i2_t1_queue_delay_2000us", instances=2, intra_op_threads=1, max_queue_delay_us=2000),
        Variant("i2_t1_preferred_8_16", instances=2, intra_op_threads=1, preferred_batch_sizes=(8, 16)),
        Variant("i3_t1", instances=3, intra_op_threads=1),
        Variant("i2_t1_warmup", instances=2, intra_op_threads=1, warmup=True),
    ),
}
VARIANTS = PASSES[1]


@dataclass
class Plan:
    lone_requests: int = 60  # sequential batch-1 requests per variant
    concurrency: int = 8
    concurrent_requests: int = 160  # per variant, spread over the concurrent clients
    rounds: int = 4  # the counts above are split into this many interleaved rounds
    variants: tuple[Variant, ...] = VARIANTS


@dataclass
class Samples:
    cold_ms: float = 0.0
    lone_ms: list[float] = field(default_factory=list)
    concurrent_ms: list[float] = field(default_factory=list)
    concurrent_wall_s: float = 0.0


def variant_repository(repo: Path, model: str, variants: tuple[Variant, ...], out: Path) -> dict[str, str]:
    """A repository holding only copies of ``model``, one per variant, named ``{model}__{variant}``."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from sae.repository.validate import read_config

    names = {}
    for v in variants:
        name = f"{model}__{v.name}"
        shutil.copytree(repo / model, out / name, symlinks=True)
        config = read_config(out / name / "config.pbtxt")
        config.name = name
        config.ClearField("dynamic_batching")
        if v.dynamic_batching:
            config.dynamic_batching.SetInParent()
            if v.max_queue_delay_us:
                config.dynamic_batching.max_queue_delay_microseconds = v.max_queue_delay_us
            config.dynamic_batching.preferred_batch_size.extend(v.preferred_batch_sizes)
        del config.instance_group[:]
        config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=v.instances)
        config.parameters["intra_op_threads"].string_value = str(v.intra_op_threads)
        del config.model_warmup[:]
        if v.warmup:
            tensor = config.input[0]
            data = {"zero_data": True}  # as repository/configs.py: random bytes include NaN, which decode refuses
            for b in (1, 8):
                config.model_warmup.append(
                    pb.ModelWarmup(
                        name=f"batch_{b}",
                        batch_size=b,
                        count=1,
                        inputs={
                            tensor.name: pb.ModelWarmup.Input(data_type=tensor.data_type, dims=tensor.dims, **data)
                        },
                    )
                )
        text = text_format.MessageToString(config, use_short_repeated_primitives=True)
        (out / name / "config.pbtxt").write_text(text)
        names[v.name] = name
    return names


def _request(client, model: str, tensor_name: str, dtype: str, array: np.ndarray) -> float:
    import tritonclient.grpc as grpcclient

    t = grpcclient.InferInput(tensor_name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    start = time.perf_counter()
    client.infer(model, [t])
    return (time.perf_counter() - start) * 1e3


def measure(url: str, names: dict[str, str], input_spec: tuple[str, str, list[int]], plan: Plan) -> dict:
    import tritonclient.grpc as grpcclient

    tensor_name, dtype, dims = input_spec
    rng = np.random.default_rng(0)
    one = (
        rng.integers(0, 256, [1, *dims]).astype(np.uint8)
        if dtype == "UINT8"
        else rng.normal(size=[1, *dims]).astype(np.float32)
    )
    clients = [grpcclient.InferenceServerClient(url) for _ in range(plan.concurrency)]
    samples = {v: Samples() for v in names}
    for v, model in names.items():  # the first request after load: what warmup is for
        samples[v].cold_ms = _request(clients[0], model, tensor_name, dtype, one)
    lone = plan.lone_requests // plan.rounds
    per_client = plan.concurrent_requests // plan.rounds // plan.concurrency
    order = list(names.items())
    for r in range(plan.rounds):
        for v, model in order[r % len(order) :] + order[: r % len(order)]:  # rotated: no variant always goes first
            s = samples[v]
            s.lone_ms += [_request(clients[0], model, tensor_name, dtype, one) for _ in range(lone)]
            lock = threading.Lock()

            def worker(c):
                got = [_request(c, model, tensor_name, dtype, one) for _ in range(per_client)]
                with lock:
                    s.concurrent_ms.extend(got)

            start = time.perf_counter()
            with ThreadPoolExecutor(plan.concurrency) as pool:
                list(pool.map(worker, clients))
            s.concurrent_wall_s += time.perf_counter() - start
    result = {}
    for v, model in names.items():
        s = samples[v]
        stats = clients[0].get_inference_statistics(model, as_json=True)["model_stats"][0]
        inference = stats["inference_stats"]
        count = max(int(inference["success"]["count"]), 1)
        batches = stats.get("batch_stats", [])
        executions = sum(int(b["compute_infer"]["count"]) for b in batches) or count
        result[v] = {
            "cold_first_request_ms": round(s.cold_ms, 2),
            "lone_batch1_p50_ms": round(statistics.median(s.lone_ms), 3),
            "lone_batch1_p90_ms": round(float(np.percentile(s.lone_ms, 90)), 3),
            f"c{plan.concurrency}_batch1_p50_ms": round(statistics.median(s.concurrent_ms), 3),
            f"c{plan.concurrency}_batch1_p90_ms": round(float(np.percentile(s.concurrent_ms, 90)), 3),
            f"c{plan.concurrency}_requests_per_s": round(len(s.concurrent_ms) / s.concurrent_wall_s, 1),
            "server_queue_ms_avg": round(int(inference["queue"]["ns"]) / count / 1e6, 3),
            "server_compute_ms_avg": round(int(inference["compute_infer"]["ns"]) / count / 1e6, 3),
            "requests_per_execution": round(count / executions, 2),
        }
    for c in clients:
        c.close()
    return result


def main(argv: list[str] | None = None) -> int:
    from sae.repository.validate import read_config
    from sae.serving.triton import ServerConfig, TritonServer

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="an exported repository")
    p.add_argument("--model", default="decode", help="the python-flavour graph model to tune (decode or encode)")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the figures")
    p.add_argument("--rounds", type=int, default=Plan.rounds)
    p.add_argument(
        "--pass",
        dest="pass_",
        type=int,
        choices=sorted(PASSES),
        default=1,
        help="1: one change from an empty dynamic_batching; 2: one change from pass 1's best",
    )
    p.add_argument("--lone-requests", type=int, default=Plan.lone_requests)
    args = p.parse_args(argv)
    config = read_config(args.repo / args.model / "config.pbtxt")
    tensor = config.input[0]
    from tritonclient.grpc import model_config_pb2 as pb

    spec = (tensor.name, pb.DataType.Name(tensor.data_type)[5:], list(tensor.dims))
    plan = Plan(rounds=args.rounds, variants=PASSES[args.pass_], lone_requests=args.lone_requests)
    with tempfile.TemporaryDirectory(prefix="sae-tune-") as tmp:
        names = variant_repository(args.repo, args.model, plan.variants, Path(tmp))
        with TritonServer(ServerConfig(repository=Path(tmp)), log_path=Path(tmp) / "server.log") as server:
            started = time.strftime("%Y-%m-%dT%H:%M:%S")
            figures = measure(server.grpc_url, names, spec, plan)
    report = {
        "model": args.model,
        "repository": str(args.repo),
        "started": started,
        "pass": args.pass_,
        "plan": {
            "lone_requests": plan.lone_requests,
            "concurrency": plan.concurrency,
            "concurrent_requests": plan.concurrent_requests,
            "rounds": plan.rounds,
        },
        "variants": {v.name: v.__dict__ for v in plan.variants},
        "figures": figures,
    }
    text = json.dumps(report, indent=2, default=list)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    for v, f in figures.items():
        print(f"{v:24s} " + "  ".join(f"{k}={val}" for k, val in f.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
