"""`sae export` (a checkpoint into the repository, or ``--rollback``) and `sae validate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae.cli import arguments as arg
from sae.cli import output
from sae.core.errors import UsageError


def parity_line(report) -> str:
    """The export's worst |eager - runtime| per graph and runtime, as one line."""
    return "max |eager - runtime|: " + ", ".join(f"{k} {v:.1e}" for k, v in report.worst().items())


def cmd_export(args: argparse.Namespace) -> int:
    from sae.export.model_set import export_run
    from sae.repository.configs import IN_PROCESS, RepositoryOptions, ServingSettings
    from sae.repository.install import rollback

    if args.rollback is not None:
        newest, previous, models = rollback(args.repo, args.rollback)
        output.result(
            f"rolled back {args.rollback or '(unprefixed)'} in {args.repo} from version {newest} to {previous} "
            f"({len(models)} models)"
        )
        return 0
    if args.run is None:
        raise UsageError("give the run to export (a run folder or checkpoint), or --rollback NAME")

    # in_process: each sampling request decodes alone in the sampler's own 2 instances, as before BLS
    serving = (
        ServingSettings(sample_decoding=IN_PROCESS, hybrid_sample_instances=2, prior_sample_instances=2)
        if args.sample_decoding == IN_PROCESS
        else ServingSettings()
    )
    options = RepositoryOptions(
        serving=serving, **arg.values_of(args, "name", "flavour", "native_runtime", "tensorrt", "gpu_precision")
    )
    report = export_run(
        args.run,
        args.repo,
        data_path=args.data,
        bank_size=args.bank_size,
        bank_seed=args.bank_seed,
        range_images=args.range_images,
        options=options,
    )
    output.result(
        f"exported {report.config_name} (step {report.step}) to {report.repository} as {', '.join(report.models)} "
        f"version {report.version} ({report.flavour} flavour); {parity_line(report)}; bank of {report.bank_size} "
        "latents"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from sae.repository.install import finish_interrupted
    from sae.repository.validate import validate_repository

    finished = finish_interrupted(args.repo)  # an export killed mid-install: its set completed before the check
    if finished:
        output.result(f"finished an interrupted install of {', '.join(finished)}")
    problems = validate_repository(args.repo)
    for problem in problems:
        output.result(f"{problem.severity}: {problem}")
    errors = sum(p.severity == "error" for p in problems)
    output.result(
        f"{args.repo}: {'invalid' if errors else 'valid'} ({errors} errors, {len(problems) - errors} warnings)"
    )
    return 1 if errors else 0


def add_parsers(sub) -> None:
    e = sub.add_parser("export", help="checkpoint -> one model's set of Triton models (ONNX, TorchScript, bank)")
    e.add_argument(
        "run",
        type=Path,
        nargs="?",
        default=None,
        help="run folder, .pt checkpoint or model.safetensors (beside its config.json)",
    )
    e.add_argument(
        "--rollback",
        type=arg.model_name,
        default=None,
        metavar="NAME",
        help="instead of exporting: serve the previous version of the set NAME again ('' for the "
        "unprefixed set); each export writes version N+1 and keeps two earlier ones",
    )
    arg.add_repo(e, "Triton model repository to write into")
    e.add_argument(
        "--name", type=arg.model_name, default="", help="prefix of the model names (NAME_encode, ...); default: none"
    )
    e.add_argument(
        "--flavour",
        choices=["python", "native"],
        default="python",
        help="python: ONNX Runtime in python-backend models (bundled server); native: onnxruntime_onnx "
        "or pytorch_libtorch on KIND_GPU (NVIDIA's stock container)",
    )
    e.add_argument(
        "--native-runtime",
        choices=["onnxruntime", "libtorch"],
        default="onnxruntime",
        help="native flavour: onnxruntime_onnx on model.onnx or pytorch_libtorch on model.pt",
    )
    e.add_argument("--tensorrt", action="store_true", help="native onnxruntime: TensorRT execution accelerator")
    e.add_argument(
        "--gpu-precision",
        choices=["fp16", "fp32"],
        default="fp16",
        help="native flavour without TensorRT: which ONNX graph the CUDA provider runs",
    )
    e.add_argument("--data", type=Path, default=None, help="training data (default: the file the run used)")
    e.add_argument(
        "--sample-decoding",
        choices=["bls", "in_process"],
        default="bls",
        help="python flavour: hybrid_sample and prior_sample decode through NAME_decode, whose batcher "
        "merges concurrent requests (bls), or each request alone in the sampler (in_process: lower "
        "latency for one client at a time on a CPU; docs/performance.md)",
    )
    e.add_argument(
        "--bank-size",
        type=arg.positive_int,
        default=128,
        help="stored training latents that hybrid sampling draws from",
    )
    e.add_argument("--bank-seed", type=arg.non_negative_int, default=0, help="seed of the bank's choice of images")
    e.add_argument(
        "--range-images",
        type=arg.positive_int,
        default=None,
        help="take the bank's per-dimension ranges (traversal limits) over this many training images "
        "instead of the whole training split (faster export of large datasets)",
    )
    e.set_defaults(func=cmd_export)

    v = sub.add_parser(
        "validate",
        help="check every config.pbtxt of a repository against its files and ensembles "
        "(first finishing an install that a kill interrupted)",
    )
    arg.add_repo(v, "Triton model repository to check")
    v.set_defaults(func=cmd_validate)
