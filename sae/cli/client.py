"""The commands that talk to a running server: `sae sample`, `sae models`, `sae load`, `sae unload` and
`sae encode`."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from sae.cli import arguments as arg
from sae.cli import output
from sae.core.errors import UsageError
from sae.core.wire import DEFAULT_URL


def write_sample_grid(
    url: str, n: int, seed: int, out: Path, per_dimension: bool = False, draw: str | None = None, model: str = ""
) -> Path:
    from sae.clients.triton_client import SAEClient
    from sae.core.draw import to_uint8
    from sae.core.png import image_grid, write_png

    with SAEClient(url, model=model) as client:
        client.wait_ready(timeout_s=30)
        samples = client.sample(n, seed=seed, per_dimension=per_dimension, draw=draw)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, image_grid(to_uint8(samples.images), ncols=int(round(n**0.5))))
    return out


def cmd_sample(args: argparse.Namespace) -> int:
    """Hybrid samples streamed to --out (format by suffix: clients/jobs/sample_writer.py), one request at a time."""
    from sae.clients.jobs.sample_writer import SampleRun, sample_format, stream_samples
    from sae.clients.triton_client import SAEClient

    suffix = sample_format(args.out, args.n)  # a ValueError: exit 2, before any request
    with SAEClient(args.url, model=args.model) as client:
        client.wait_ready(timeout_s=30)
        run = SampleRun(n=args.n, seed=args.seed, limit=client.max_samples())
        paths = stream_samples(
            lambda count, seed: client.sample(count, seed=seed, per_dimension=args.per_dimension, draw=args.draw),
            run,
            args.out,
        )
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} PNG tiles {paths[0]} .. {paths[-1].name}"
    requests = f"{run.requests} request{'s' if run.requests != 1 else ''}"
    output.result(
        f"wrote {args.n} hybrid samples to {where} ({suffix[1:]}, {requests})",
        {
            "samples": args.n,
            "seed": args.seed,
            "format": suffix[1:],
            "files": [str(p) for p in paths],
            "requests": run.requests,
            "url": args.url,
            "model": args.model,
        },
        args.json,
    )
    return output.OK


def cmd_models(args: argparse.Namespace) -> int:
    """The model sets a server serves: state, versions, draw modes and limits of each (serving/served_sets.py)."""
    from sae.serving.served_sets import describe_sets, set_lines

    sets = describe_sets(args.url)
    output.result(
        "\n".join(set_lines(sets)), {"url": args.url, "sets": [dataclasses.asdict(s) for s in sets]}, args.json
    )
    return output.OK


def cmd_model_control(args: argparse.Namespace) -> int:
    """`sae load` / `sae unload`: whole model sets, on a server in explicit model-control mode."""
    from sae.clients.model_control import change_sets

    if args.all == (args.name is not None):
        raise UsageError("name one model set (NAME; '' is the unprefixed set) or pass --all")
    load = args.command == "load"
    for change in change_sets(args.url, None if args.all else [args.name], load=load):
        label = repr(change.name) if change.name else "the unprefixed set"
        output.result(f"{'loaded' if load else 'unloaded'} {label}: {', '.join(change.models)}")
    return output.OK


def cmd_encode(args: argparse.Namespace) -> int:
    """One process (``--engine local``), a Ray cluster (``--engine ray``: shards in a folder), or ``--merge``."""
    if args.merge is not None:
        if args.data is not None:
            raise UsageError("give either DATA (to encode) or --merge DIR (to join its shards), not both")
        from sae.clients.jobs.ray_encode.shards import merge_shards

        merged = merge_shards(args.merge, _encode_output_file(args.out))
        output.result(merged.summary(), _report_document(merged), args.json)
        return output.OK
    if args.data is None:
        raise UsageError("give the dataset to encode (DATA), or --merge DIR")
    urls = arg.urls_or_env(args.url)
    if args.engine == "ray":
        if args.shared_memory or args.metrics_port is not None:
            raise UsageError("--shared-memory and --metrics-port are options of --engine local")
        from sae.clients.jobs.ray_encode.config import RayEncodeConfig
        from sae.clients.jobs.ray_encode.job import run_ray_encode

        ray_config = RayEncodeConfig(
            out=args.out,
            **_encode_options(args, urls),
            **arg.values_of(args, "address", "actors", "shard_rows"),
        )
        ray_report = run_ray_encode(ray_config)
        output.result(ray_report.summary(), _report_document(ray_report), args.json)
        return output.FAILURE if ray_report.failed else output.OK
    from sae.clients.jobs.encode_job import EncodeJobConfig, run_encode_job

    config = EncodeJobConfig(
        out=_encode_output_file(args.out),
        **_encode_options(args, urls),
        **arg.values_of(args, "in_flight", "shared_memory", "metrics_port"),
    )
    report = run_encode_job(config)
    output.result(report.summary(), _report_document(report), args.json)
    return output.OK


def _encode_options(args: argparse.Namespace, urls: tuple[str, ...]) -> dict[str, Any]:
    """The fields that EncodeJobConfig (one process) and RayEncodeConfig (a Ray cluster) share, from the flags."""
    return {
        **arg.values_of(args, "data", "model", "batch_size"),
        "urls": urls,
        "timeout_s": args.timeout,
        "max_images_per_second": args.max_rate,
        "outage_wait_s": args.outage_wait,
    }


def _report_document(report) -> dict:
    """An encode or merge report dataclass as JSON, with its one-line summary."""
    return {**dataclasses.asdict(report), "summary": report.summary()}


def _encode_output_file(path: Path) -> Path:
    try:
        return arg.output_file(str(path))
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"--out: {e}") from None


def add_parsers(sub) -> None:
    sm = sub.add_parser("sample", help="hybrid samples from a running server: PNG grids, .h5 or .npz arrays")
    sm.add_argument(
        "--n",
        type=arg.sample_count,
        default=64,
        help="number of samples (sent in parts above the server's per-request limit)",
    )
    arg.add_seed(sm, "SEED of the request: same seed, same images")
    sm.add_argument(
        "--out",
        type=arg.output_file,
        default=Path("samples.png"),
        help="the suffix decides: .png grids of at most 1,024 samples (samples.png, or samples_0000.png, "
        "... for more), .h5 images uint8 + latents + source_index streamed chunk by chunk, .npz the "
        "same arrays in memory (at most 16,384 samples)",
    )
    arg.add_url(sm)
    arg.add_model(sm)
    sm.add_argument(
        "--draw",
        default=None,
        help="independent (default: each variable from its own uniformly chosen stored latent, with "
        "replacement), distinct (the variables of a sample from different stored latents) or "
        "per_dimension (each dimension on its own)",
    )
    sm.add_argument("--per-dimension", action="store_true", help="the same as --draw per_dimension")
    arg.add_json(sm)
    sm.set_defaults(func=cmd_sample)

    ms = sub.add_parser("models", help="the model sets a running server serves: state, versions, draw modes, limits")
    arg.add_url(ms)
    arg.add_json(ms)
    ms.set_defaults(func=cmd_models)

    for command, verb in (("load", "load"), ("unload", "unload")):
        lc = sub.add_parser(
            command,
            help=f"{verb} a model set (every role) on a server started with `sae serve --model-control explicit`",
        )
        lc.add_argument(
            "name",
            nargs="?",
            default=None,
            type=arg.model_name,
            help="the set's export name (sae export --name; '' for the unprefixed set)",
        )
        lc.add_argument("--all", action="store_true", help=f"{verb} every set in the server's repository")
        arg.add_url(lc)
        lc.set_defaults(func=cmd_model_control)

    en = sub.add_parser(
        "encode",
        help="encode a dataset through the server(s) into an HDF5 file of latents "
        "(resumable: run it again after an interruption); --engine ray spreads it over a Ray cluster",
    )
    en.add_argument(
        "data",
        type=Path,
        nargs="?",
        default=None,
        help="dataset: .h5 (3D-Shapes format), .npz (MPI3D) or a folder of JPEGs",
    )
    en.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output HDF5 file (latents, labels); with --engine ray a folder of shards and their manifest",
    )
    arg.add_model(en)
    arg.add_url(
        en,
        action="append",
        help=f"gRPC address of a server (default {DEFAULT_URL}); repeat to spread over several; with "
        "--engine ray, node:PORT is the server on each actor's own node",
    )
    en.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: "
        "Ray Data blocks and an actor pool of clients (pip install 'sae-serving[scale]')",
    )
    en.add_argument(
        "--merge",
        type=Path,
        default=None,
        metavar="DIR",
        help="join the shards of DIR (an --engine ray "
        "output) into the single file --out, identical to --engine local's",
    )
    en.add_argument(
        "--in-flight",
        type=arg.positive_int,
        default=4,
        help="requests in flight over all servers (--engine local; with ray, one per actor)",
    )
    en.add_argument(
        "--batch-size", type=arg.positive_int, default=256, help="images per request and per committed chunk"
    )
    en.add_argument("--timeout", type=arg.positive_float, default=60.0, help="seconds per request, retries included")
    en.add_argument("--shared-memory", action="store_true", help="send images through system shared memory (local)")
    en.add_argument(
        "--metrics-port", type=arg.port, default=None, help="serve Prometheus metrics on 127.0.0.1:PORT (local)"
    )
    en.add_argument(
        "--max-rate",
        type=arg.positive_float,
        default=None,
        help="send at most this many images per second (with --engine ray: per actor)",
    )
    en.add_argument(
        "--outage-wait",
        type=arg.non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="when every server is down, wait this long for one to come back (default 60)",
    )
    en.add_argument(
        "--address",
        default=None,
        help="--engine ray: the cluster (auto, HOST:PORT or ray://HOST:10001); default: start a local one",
    )
    en.add_argument(
        "--actors", type=arg.positive_int, default=2, help="--engine ray: encoder actors, one request in flight each"
    )
    en.add_argument(
        "--shard-rows",
        type=arg.positive_int,
        default=4096,
        help="--engine ray: images per block and per shard file (a multiple of --batch-size)",
    )
    arg.add_json(en)
    en.set_defaults(func=cmd_encode)
