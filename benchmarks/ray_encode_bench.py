"""Images/s of `sae encode --engine ray` beside the single-process `sae encode`, in one run, and Ray's cost per block.

    python benchmarks/ray_encode_bench.py --data data/shapes3d.h5 --url 127.0.0.1:8001 --out out/bench/ray_encode.json

Against the same servers, the same dataset and the same batch size, one after the other:

* ``local, in-flight 1`` and ``local, in-flight I`` (I = ``--in-flight``): `sae encode` in this process;
* ``ray, K actors`` for each K of ``--actors``: the Ray path on a local cluster of ``--num-cpus`` CPUs, started once
  (its start-up is reported on its own and not counted in any run), each run from an empty folder.

Each figure is wall-clock seconds of the whole call (connecting, the probe, actor start-up and the shard writes
included) over the images encoded. The Ray overhead per block is (ray with 1 actor − local with one request in
flight) / blocks: the same requests, one at a time, so the difference is what Ray adds (read tasks, the object store,
actor start-up, the shard files). The actors' own clocks split it: ``startup_to_first_block_s`` (the pool's actors
start, connect and check the probe, the first block is read), ``actor_idle_per_block_s`` (after that, the time an
actor waits between blocks, per block) and ``in_actor_outside_requests_per_block_s`` (the shard write). The merged
shards of every Ray run are compared with the local file
(``identical``: byte for byte).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sae.clients.jobs.encode_job import EncodeJobConfig, run_encode_job  # noqa: E402
from sae.clients.jobs.ray_encode.config import RayEncodeConfig  # noqa: E402
from sae.clients.jobs.ray_encode.shards import merge_shards  # noqa: E402


def timed(call) -> tuple[object, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def measure(args: argparse.Namespace, work: Path) -> dict:
    import ray

    from sae.clients.jobs.ray_encode.job import run_ray_encode

    urls = tuple(args.url)
    # what the local and the Ray job are both given: the same images, model, servers and batch size
    job_options = {
        "data": args.data,
        "model": args.model,
        "urls": urls,
        "batch_size": args.batch_size,
        "progress": False,
    }
    local_runs, reference = [], None
    for in_flight in dict.fromkeys((1, args.in_flight)):
        out = work / f"local-{in_flight}.h5"
        report, seconds = timed(lambda: run_encode_job(EncodeJobConfig(**job_options, out=out, in_flight=in_flight)))
        local_runs.append(
            {
                "engine": "local",
                "in_flight": in_flight,
                "images": report.encoded,
                "seconds": seconds,
                "images_per_second": report.encoded / seconds,
            }
        )
        reference = reference or out
    _, startup = timed(
        lambda: ray.init(
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="WARNING",
            _node_ip_address="127.0.0.1",
        )
    )
    ray_runs = []
    try:
        for actors in args.actors:
            out = work / f"ray-{actors}"
            config = RayEncodeConfig(**job_options, out=out, actors=actors, shard_rows=args.shard_rows)
            report, seconds = timed(lambda: run_ray_encode(config))
            merged = merge_shards(out, work / f"ray-{actors}.h5").out
            outside = [b - r for b, r in zip(report.block_seconds, report.request_seconds)]
            first_start = min(f - b for f, b in zip(report.block_finished_at, report.block_seconds))
            span = max(report.block_finished_at) - first_start
            ray_runs.append(
                {
                    "engine": "ray",
                    "actors": actors,
                    "images": report.encoded_images,
                    "seconds": seconds,
                    "images_per_second": report.encoded_images / seconds,
                    "blocks": report.encoded,
                    "failed_blocks": len(report.failed),
                    "block_seconds_mean": sum(report.block_seconds) / len(report.block_seconds),
                    "in_actor_outside_requests_per_block_s": sum(outside) / len(outside),
                    "startup_to_first_block_s": first_start - report.started_at,
                    "actor_idle_per_block_s": (span * actors - sum(report.block_seconds)) / report.encoded,
                    "identical": merged.read_bytes() == reference.read_bytes(),
                }
            )
    finally:
        ray.shutdown()
    one_actor = next((r for r in ray_runs if r["actors"] == 1), None)
    overhead = ((one_actor["seconds"] - local_runs[0]["seconds"]) / one_actor["blocks"]) if one_actor else None
    return {
        "data": str(args.data),
        "urls": list(urls),
        "batch_size": args.batch_size,
        "shard_rows": args.shard_rows,
        "ray_num_cpus": args.num_cpus,
        "ray_startup_s": startup,
        "runs": local_runs + ray_runs,
        "ray_overhead_per_block_s": overhead,
        "per_server_images_per_second": max(r["images_per_second"] for r in local_runs) / len(urls),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }


def table(result: dict) -> str:
    lines = ["| path | images | seconds | images/s |", "| --- | ---: | ---: | ---: |"]
    for run in result["runs"]:
        name = (
            f"local, in-flight {run['in_flight']}"
            if run["engine"] == "local"
            else f"ray, {run['actors']} actor{'s' if run['actors'] > 1 else ''}"
            f"{'' if run['identical'] else ' (NOT identical)'}"
        )
        lines.append(f"| {name} | {run['images']:,} | {run['seconds']:.1f} | {run['images_per_second']:,.0f} |")
    if result["ray_overhead_per_block_s"] is not None:
        lines.append(
            f"\nRay overhead per block of {result['shard_rows']:,} images: "
            f"{1000 * result['ray_overhead_per_block_s']:.0f} ms; cluster start-up "
            f"{result['ray_startup_s']:.1f} s (not counted above)"
        )
    for run in result["runs"]:
        if run["engine"] == "ray":
            lines.append(
                f"ray, {run['actors']} actors: {run['startup_to_first_block_s']:.1f} s to the first block, "
                f"then per block {1000 * run['actor_idle_per_block_s']:.0f} ms idle between blocks and "
                f"{1000 * run['in_actor_outside_requests_per_block_s']:.0f} ms writing the shard; "
                f"{run['block_seconds_mean']:.2f} s per block in its actor"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset (.h5, .npz or a JPEG folder)")
    parser.add_argument("--url", action="append", default=None, help="gRPC address of a server (repeatable)")
    parser.add_argument("--model", default="", help="name the model set was exported under")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--shard-rows", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, default=2, help="the second local run's requests in flight")
    parser.add_argument(
        "--actors",
        type=lambda s: [int(k) for k in s.split(",")],
        default=[1, 2],
        help="comma-separated actor counts of the Ray runs",
    )
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--out", type=Path, default=Path("out/bench/ray_encode.json"))
    args = parser.parse_args(argv)
    args.url = args.url or ["127.0.0.1:8001"]
    with tempfile.TemporaryDirectory(prefix="ray-encode-bench-") as work:
        result = measure(args, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
