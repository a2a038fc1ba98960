"""`sae serve`: the bundled Triton server on a repository until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae.cli import arguments as arg
from sae.cli import output
from sae.core.errors import UsageError


def poll_args(seconds: int | None) -> tuple[str, ...]:
    """``sae serve --poll S``: Triton's poll mode, so that each export (a new version, a rollback) is picked up live."""
    return () if seconds is None else ("--model-control-mode=poll", f"--repository-poll-secs={seconds}")


def model_control_args(mode: str | None) -> tuple[str, ...]:
    """``sae serve --model-control explicit``: every model loaded at start, then `sae load` / `sae unload` change
    what is served without a restart."""
    return () if mode in (None, "none") else (f"--model-control-mode={mode}", "--load-model=*")


def server_config(args: argparse.Namespace):
    from sae.serving.triton import ServerConfig

    host = args.host or "127.0.0.1"
    config = ServerConfig(
        repository=Path(args.repo),
        host=host,
        allow_external=args.host is not None,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        extra_args=(
            poll_args(getattr(args, "poll", None))
            + model_control_args(getattr(args, "model_control", None))
            + tuple(getattr(args, "triton_args", None) or ())
        ),
        gpu=getattr(args, "gpu", None),
    )
    if not config.is_loopback:
        output.warning(
            args.command,
            f"binding {host} (--host), not loopback: the server is reachable from other "
            "machines, with no authentication",
        )
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from sae.serving.triton import serve_forever

    if args.poll is not None and args.model_control == "explicit":
        raise UsageError("--poll and --model-control explicit are two different model-control modes: choose one")
    return serve_forever(server_config(args), log_path=args.log)


def add_parsers(sub) -> None:
    def add_ports(sp: argparse.ArgumentParser) -> None:
        arg.add_repo(sp, "Triton model repository to serve")
        sp.add_argument("--grpc-port", type=arg.port, default=8001, help="gRPC port (sae sample, encode, eval)")
        sp.add_argument("--http-port", type=arg.port, default=8000, help="HTTP/REST port (KServe v2)")
        sp.add_argument("--metrics-port", type=arg.port, default=8002, help="Prometheus metrics port")
        sp.add_argument(
            "--host",
            default=None,
            help="address to bind (default 127.0.0.1); a non-loopback address "
            "makes the server reachable from other machines, and sae serve says so",
        )

    s = sub.add_parser(
        "serve",
        help="run tritonserver on 127.0.0.1 until Ctrl-C / SIGTERM",
        usage="sae serve [options] [-- TRITONSERVER_ARGS ...]",
    )
    add_ports(s)
    s.add_argument(
        "--log",
        type=arg.output_file,
        default=None,
        metavar="FILE",
        help="keep the server log in FILE (default: a temporary file, deleted on stop)",
    )
    s.add_argument(
        "--poll",
        type=arg.positive_int,
        default=None,
        metavar="SECONDS",
        help="poll the repository every SECONDS and load what changed: exports and rollbacks go live "
        "without a restart (each model is swapped whole, so every answer comes from one version)",
    )
    s.add_argument(
        "--model-control",
        choices=["none", "explicit"],
        default=None,
        help="explicit: load every model at start, then `sae load NAME` / `sae unload NAME` change what "
        "is served (not with --poll)",
    )
    gpu = s.add_mutually_exclusive_group()
    gpu.add_argument(
        "--gpu",
        dest="gpu",
        action="store_const",
        const=True,
        default=None,
        help="GPU memory pools (pinned host pool, a CUDA pool per visible GPU) even if no GPU is found "
        "(default: when nvidia-smi or /dev/nvidia* shows one)",
    )
    gpu.add_argument(
        "--cpu-only",
        dest="gpu",
        action="store_const",
        const=False,
        help="CPU-only flags (no pinned or CUDA pools) even on a GPU machine",
    )
    s.add_argument(
        "triton_args",
        nargs="*",
        metavar="TRITONSERVER_ARGS",
        help="after --: passed to tritonserver after the package's own flags (a repeated flag takes "
        "the later value), e.g. -- --model-control-mode=poll --repository-poll-secs=5",
    )
    s.set_defaults(func=cmd_serve)
