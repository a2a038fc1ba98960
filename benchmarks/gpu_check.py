"""One GPU check in one run: training throughput, in-process decode and hybrid-sample latency, the served GPU path.

    python benchmarks/gpu_check.py --out gpu.json          # on one H100/H200: everything, within about 8 minutes
    python benchmarks/gpu_check.py --cpu-tiny --out cpu.json   # the same code on the CPU, tiny and fast (CI)

Sections (each records its own error or skip reason instead of stopping the run; a time budget skips what would
not fit):

* ``train``: images/s of ``sae12-shapes3d`` at batch 128 with the real trainer (bf16 autocast and channels_last on
  CUDA), eager and ``torch.compile``d (``benchmarks/train_throughput.py``'s measure).
* ``in_process``: decode (latents -> images) and hybrid_sample (the served sampler's numpy draw, then decode) at
  batch 1, 64 and 256, host arrays in and out, in ``eager``, ``compiled`` and ``cuda_graph`` modes (the runner of
  ``repository/templates/torch_model.py``). The weights are untrained: latency does not depend on them.
* ``served``: the same two paths through the bundled Triton server, whose decode is the TorchScript graph run by
  PyTorch inside the python backend (``torch_model.py``) on the GPU, in a small repository built here (decode,
  sampler, hybrid_sample); gRPC on 127.0.0.1 at concurrency 1 and at ``served_concurrency``.

It writes one JSON file and a markdown table beside it (``OUT`` with ``.md``) that states each target met or not.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from clients.bench.config import CellLimits  # noqa: E402
from clients.bench.device import device_info  # noqa: E402
from clients.bench.timing import run_cell, warm_up  # noqa: E402

SCHEMA = "sae-gpu-check/1"
MODES = ("eager", "compiled", "cuda_graph")
PATHS = ("decode", "hybrid_sample")
TARGETS = (  # (key, what, comparison, bound)
    ("train_images_per_s", "training throughput (img/s), best of eager and compiled", ">=", 10_000.0),
    ("served_hybrid_b256_samples_per_s", "served hybrid_sample b256, best concurrency (samples/s)", ">=", 50_000.0),
    ("hybrid_b1_p50_ms", "served hybrid_sample b1 p50 (ms)", "<=", 2.0),
)


@dataclasses.dataclass(frozen=True)
class CheckPlan:
    """What one run measures and how long it may take."""

    device: str  # "cuda" or "cpu"
    train_config: str
    train_batch_size: int
    train_warmup: int
    train_steps: int
    train_images: int  # procedural images rendered for the training section
    model_config: str  # the model whose decoder is timed in-process and served
    batch_sizes: tuple[int, ...]
    cell: CellLimits  # per latency cell
    served_concurrency: int
    precision: str  # "bf16" (autocast) on CUDA, "fp32" on the CPU
    budget_s: float  # the whole run; a section that would start after it is skipped
    served: bool = True

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def full_plan(budget_s: float = 450.0) -> CheckPlan:
    return CheckPlan(device="cuda", train_config="sae12-shapes3d", train_batch_size=128, train_warmup=20,
                     train_steps=100, train_images=2048, model_config="sae12-shapes3d", batch_sizes=(1, 64, 256),
                     cell=CellLimits(max_seconds=2.0, max_requests=200, warmup_requests=5),
                     served_concurrency=8, precision="bf16", budget_s=budget_s)


def cpu_tiny_plan(budget_s: float = 120.0) -> CheckPlan:
    return CheckPlan(device="cpu", train_config="sae12-tiny", train_batch_size=8, train_warmup=1, train_steps=2,
                     train_images=256, model_config="sae12-tiny", batch_sizes=(1, 4),
                     cell=CellLimits(max_seconds=0.3, max_requests=5, warmup_requests=1),
                     served_concurrency=2, precision="fp32", budget_s=budget_s)


class Clock:
    def __init__(self, budget_s: float):
        self.started = time.monotonic()
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over(self) -> str | None:
        """A skip reason once the budget is spent, else None."""
        if self.elapsed() > self.budget_s:
            return f"time budget of {self.budget_s:.0f} s spent ({self.elapsed():.0f} s elapsed)"
        return None


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------------------------------------ training


def train_section(plan: CheckPlan, clock: Clock, data: Path) -> list[dict]:
    from benchmarks.train_throughput import measure

    results = []
    for compile_step in (False, True):
        entry = {"config": plan.train_config, "batch_size": plan.train_batch_size, "compile": compile_step}
        if compile_step and not plan.cuda:
            results.append({**entry, "skipped": "torch.compile is measured on CUDA only"})
            continue
        if (reason := clock.over()) is not None:
            results.append({**entry, "skipped": reason})
            continue
        started = time.monotonic()
        try:
            result, trainer = measure(plan.train_config, data, plan.device, plan.train_warmup, plan.train_steps,
                                      plan.train_batch_size, compile_step)
            trainer.data.close()
            results.append({**entry, **dataclasses.asdict(result), "wall_s": time.monotonic() - started})
        except Exception as e:  # noqa: BLE001 - recorded; the other sections still run
            results.append({**entry, "error": _error(e)})
        print(f"train compile={compile_step}: {results[-1].get('images_per_second', results[-1])}", flush=True)
    return results


# ------------------------------------------------------------------------------------------------ model and bank


def untrained_model(config_name: str, device: str):
    from training.config import get_config
    from training.models.zoo import build_model

    torch.manual_seed(0)
    return build_model(get_config(config_name).model).to(device).eval()


def synthetic_bank(model, model_name: str = "untrained", size: int = 128, seed: int = 0):
    """A bank of standard-normal latents with the model's partition: the draw and the decoder cost the same."""
    from export.bank import Bank, variable_of_dim

    latents = np.random.default_rng(seed).standard_normal((size, model.cfg.latent_dim)).astype(np.float32)
    return Bank(latents=latents, variable_of_dim=variable_of_dim(model.cfg.variable_sizes),
                source_indices=np.arange(size, dtype=np.int64), seed=seed, model_name=model_name,
                dim_min=latents.min(axis=0), dim_max=latents.max(axis=0), data_sha256="synthetic",
                checkpoint_sha256="untrained", checkpoint_step=0, num_train_images=size)


# ------------------------------------------------------------------------------------------------ in-process


def _runner(mode: str, decode_graph, plan: CheckPlan, latent_dim: int):
    from repository.templates.torch_model import TorchRunner

    module = decode_graph
    if mode == "compiled":
        module = torch.compile(decode_graph, dynamic=False)
    sizes = plan.batch_sizes if mode == "cuda_graph" else ()
    return TorchRunner(module, plan.device, plan.precision, sizes, np.zeros(latent_dim, np.float32))


def in_process_section(plan: CheckPlan, clock: Clock, model, bank) -> list[dict]:
    from export.graphs import DecodeGraph
    from repository.templates.sampler_model import draw_hybrid

    decode_graph = DecodeGraph(model).eval()
    cells = []
    for mode in MODES:
        base = {"mode": mode}
        if mode != "eager" and not plan.cuda:
            cells += [{**base, "path": p, "batch_size": b, "skipped": f"{mode} is measured on CUDA only"}
                      for p in PATHS for b in plan.batch_sizes]
            continue
        try:
            runner = _runner(mode, decode_graph, plan, bank.latent_dim)
        except Exception as e:  # noqa: BLE001 - e.g. no compiler toolchain for torch.compile
            cells += [{**base, "path": p, "batch_size": b, "error": _error(e)} for p in PATHS for b in plan.batch_sizes]
            continue
        for batch in plan.batch_sizes:
            latents = bank.latents[np.resize(np.arange(len(bank.latents)), batch)]
            calls = {"decode": lambda z=latents: runner.run(z),
                     "hybrid_sample": lambda n=batch: runner.run(draw_hybrid(bank.latents, bank.variable_of_dim,
                                                                             n, seed=0)[0])}
            for path in PATHS:
                entry = {**base, "path": path, "batch_size": batch}
                if (reason := clock.over()) is not None:
                    cells.append({**entry, "skipped": reason})
                    continue
                try:
                    warm_up(calls[path], max(plan.cell.warmup_requests, 1))  # compiles each shape once
                    stats = run_cell([calls[path]], batch, plan.cell)
                    cells.append({**entry, **stats.to_dict()})
                except Exception as e:  # noqa: BLE001
                    cells.append({**entry, "error": _error(e)})
                print(f"in-process {mode} {path} b{batch}: p50 {cells[-1].get('p50_ms')} ms", flush=True)
    return cells


# ------------------------------------------------------------------------------------------------ served


SERVED_NAME = "gpu"


def build_served_repository(repo: Path, model, bank, plan: CheckPlan) -> dict[str, str]:
    """decode (TorchScript run by torch_model.py), sampler and hybrid_sample, configs from the export's generator
    with decode's runtime parameters and instance kind changed. hybrid_sample is the ensemble sampler -> decode, so
    that its decoder is the torch one on the GPU (the export's one-hop python model runs the ONNX decoder, on the CPU
    where onnxruntime-gpu is absent). Returns {role: served model name}."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from export.graphs import graph_specs
    from export.torchscript import export_torchscript
    from repository.configs import RepositoryOptions, ServedShapes, model_configs, sampling_ensemble
    from repository.layout import BANK_FILE, PYTHON_FILE, TORCHSCRIPT_FILE
    from repository.templates import COMPANIONS, ONNX_MODEL, SAMPLER_MODEL, TORCH_MODEL
    from repository.templates.torch_model import REQUEST_CHECKS_FILE

    cpu_model = untrained_model(plan.model_config, "cpu")
    cpu_model.load_state_dict(model.state_dict())
    shapes = ServedShapes(cpu_model.cfg.backbone.image_size, cpu_model.cfg.latent_dim, bank.num_variables,
                          bank_size=len(bank.latents))
    options = RepositoryOptions(name=SERVED_NAME)
    configs = model_configs(shapes, options)
    roles = ("decode", "sampler", "hybrid_sample")
    names = {role: options.model_name(role) for role in roles}
    for role in roles:
        (repo / names[role] / "1").mkdir(parents=True)
    decode_dir = repo / names["decode"] / "1"
    export_torchscript(graph_specs(cpu_model)["decode"], decode_dir / TORCHSCRIPT_FILE)
    shutil.copyfile(TORCH_MODEL, decode_dir / PYTHON_FILE)
    shutil.copyfile(ONNX_MODEL, decode_dir / REQUEST_CHECKS_FILE)
    sampler_dir = repo / names["sampler"] / "1"
    shutil.copyfile(SAMPLER_MODEL, sampler_dir / PYTHON_FILE)
    for companion, source in COMPANIONS.items():
        shutil.copyfile(source, sampler_dir / companion)
    bank.save(sampler_dir / BANK_FILE)
    image = [shapes.image_size, shapes.image_size, 3]
    configs[names["hybrid_sample"]] = sampling_ensemble(names["hybrid_sample"], names["sampler"], names["decode"],
                                                        configs[names["sampler"]], image)

    decode = configs[names["decode"]]
    for key in ("onnx_file", "gpu_onnx_file"):
        del decode.parameters[key]
    decode.parameters["torchscript_file"].string_value = TORCHSCRIPT_FILE
    decode.parameters["precision"].string_value = plan.precision
    if plan.cuda:
        decode.parameters["cuda_graph_batch_sizes"].string_value = ",".join(map(str, plan.batch_sizes))
    del decode.instance_group[:]
    kind = pb.ModelInstanceGroup.KIND_GPU if plan.cuda else pb.ModelInstanceGroup.KIND_CPU
    decode.instance_group.append(pb.ModelInstanceGroup(kind=kind, count=1 if plan.cuda else 2))
    for role in roles:
        (repo / names[role] / "config.pbtxt").write_text(text_format.MessageToString(configs[names[role]]))
    return names


def served_blocker(plan: CheckPlan) -> str | None:
    """Why the bundled server cannot run this environment's python backend, or None."""
    import importlib.util

    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient is not installed: no gRPC client for the served section"
    if importlib.util.find_spec("pytriton") is None:
        return "nvidia-pytriton (the bundled tritonserver) is not importable; see docs/performance.md for the carry"
    major = int(np.__version__.split(".")[0])
    if major >= 2 and not os.environ.get("SAE_SERVER_PYTHONPATH"):
        return (f"numpy {np.__version__} here: the bundled python backend returns empty tensors with numpy 2; set "
                "SAE_SERVER_PYTHONPATH to a folder holding numpy<2 for the server's stubs")
    return None


def served_section(plan: CheckPlan, clock: Clock, model, bank, work: Path) -> dict:
    if not plan.served:
        return {"skipped": "turned off (--no-served)", "cells": []}
    if (reason := served_blocker(plan) or clock.over()) is not None:
        return {"skipped": reason, "cells": []}
    from clients.bench.grpc_runner import GrpcRunner
    from serving.triton import ServerConfig, TritonServer

    repo = work / "repository"
    names = build_served_repository(repo, model, bank, plan)
    extra = os.environ.get("SAE_SERVER_PYTHONPATH")
    saved = os.environ.get("PYTHONPATH")
    if extra:  # the server's stubs (children) see it; this process keeps its own numpy
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (extra, saved) if p)
    log = work / "tritonserver.log"
    section: dict = {"models": names, "log": str(log), "cells": []}
    started = time.monotonic()
    try:
        with TritonServer(ServerConfig(repository=repo, gpu=plan.cuda, startup_timeout_s=180), log_path=log) as srv:
            section["startup_s"] = time.monotonic() - started
            with GrpcRunner(srv.grpc_url) as grpc:
                for path in PATHS:
                    for batch in plan.batch_sizes:
                        if path == "decode":
                            rows = np.resize(np.arange(len(bank.latents)), batch)
                            inputs = {"LATENT": np.ascontiguousarray(bank.latents[rows])}
                        else:
                            inputs = {"NUM_SAMPLES": np.array([batch], np.int64), "SEED": np.array([0], np.int64)}
                        for concurrency in sorted({1, plan.served_concurrency}):
                            entry = {"path": path, "batch_size": batch, "concurrency": concurrency}
                            if (reason := clock.over()) is not None:
                                section["cells"].append({**entry, "skipped": reason})
                                continue
                            calls = grpc.calls(names[path], inputs, concurrency)
                            try:
                                warm_up(calls[0], max(plan.cell.warmup_requests, 1))
                                stats = run_cell(calls, batch, plan.cell)
                                section["cells"].append({**entry, **stats.to_dict()})
                            except Exception as e:  # noqa: BLE001
                                section["cells"].append({**entry, "error": _error(e)})
                            print(f"served {path} b{batch} c{concurrency}: "
                                  f"{section['cells'][-1].get('items_per_s')} items/s", flush=True)
    except Exception as e:  # noqa: BLE001 - the server did not come up: say why, keep the other sections
        section["error"] = _error(e)
    finally:
        if extra:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    return section


# ------------------------------------------------------------------------------------------------ report


def _best(cells: list[dict], key: str, better=max, **match) -> float | None:
    values = [c[key] for c in cells if all(c.get(k) == v for k, v in match.items()) and c.get(key) is not None]
    return better(values) if values else None


def target_values(report: dict) -> dict[str, float | None]:
    served = report["served"]["cells"]
    return {
        "train_images_per_s": _best(report["train"], "images_per_second"),
        "served_hybrid_b256_samples_per_s": _best(served, "items_per_s", path="hybrid_sample", batch_size=256),
        "hybrid_b1_p50_ms": _best(served, "p50_ms", min, path="hybrid_sample", batch_size=1, concurrency=1),
    }


def judge_targets(report: dict) -> list[dict]:
    values = target_values(report)
    out = []
    for key, what, op, bound in TARGETS:
        value = values[key]
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append({"target": key, "what": what, "bound": f"{op} {bound:g}", "value": value, "met": met})
    return out


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def markdown(report: dict) -> str:
    info = report["device_info"]
    lines = [f"# GPU check ({report['mode']}, {info['gpu'] or 'CPU'})", "",
             f"torch {report['versions']['torch']}, onnxruntime {report['versions']['onnxruntime']}, "
             f"driver {info['gpu_driver'] or '-'}; {report['wall_s']:.0f} s", "",
             "| target | bound | measured | met |", "| --- | --- | --- | --- |"]
    for t in report["targets"]:
        met = "n/a (not measured)" if t["met"] is None else ("met" if t["met"] else "not met")
        lines.append(f"| {t['what']} | {t['bound']} | {_num(t['value'])} | {met} |")
    lines += ["", "| section | mode | path | batch | conc | p50 ms | p90 ms | items/s | note |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for t in report["train"]:
        mode = "compiled" if t["compile"] else "eager"
        lines.append(f"| train | {mode} | {t['config']} | {t['batch_size']} | - | - | - | "
                     f"{_num(t.get('images_per_second'))} | {t.get('skipped') or t.get('error') or ''} |")
    for section in ("in_process", "served"):
        cells = report[section] if section == "in_process" else report[section]["cells"]
        for c in cells:
            lines.append(f"| {section} | {c.get('mode', 'triton')} | {c['path']} | {c['batch_size']} | "
                         f"{c.get('concurrency', 1)} | {_num(c.get('p50_ms'))} | {_num(c.get('p90_ms'))} | "
                         f"{_num(c.get('items_per_s'))} | {c.get('skipped') or c.get('error') or ''} |")
    served = report["served"]
    if served.get("skipped") or served.get("error"):
        lines.append(f"\nserved: {served.get('skipped') or served.get('error')}")
    return "\n".join(lines) + "\n"


def run_check(plan: CheckPlan, out: Path, mode: str) -> dict:
    from clients.bench.device import package_version
    from training.data.procedural import write_shapes3d_h5

    clock = Clock(plan.budget_s)
    report: dict = {"schema": SCHEMA, "mode": mode, "plan": dataclasses.asdict(plan),
                    "device_info": device_info(plan.device),
                    "versions": {"torch": torch.__version__, "numpy": np.__version__,
                                 "onnxruntime": package_version("onnxruntime-gpu", "onnxruntime"),
                                 "python": sys.version.split()[0]}}
    if plan.cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch sees no CUDA device; use --cpu-tiny on a machine without a GPU")
    if plan.cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with tempfile.TemporaryDirectory(prefix="sae-gpu-check-") as tmp:
        work = Path(tmp)
        data = work / "shapes3d.h5"
        write_shapes3d_h5(data, n=plan.train_images, seed=0)
        report["train"] = train_section(plan, clock, data)
        model = untrained_model(plan.model_config, plan.device)
        bank = synthetic_bank(model, plan.model_config)
        report["in_process"] = in_process_section(plan, clock, model, bank)
        report["served"] = served_section(plan, clock, model, bank, work)
    report["wall_s"] = clock.elapsed()
    report["targets"] = judge_targets(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("out/bench/gpu_check.json"), help="JSON; the table goes to .md")
    p.add_argument("--cpu-tiny", action="store_true", help="sae12-tiny on the CPU, few steps, small batches (CI)")
    p.add_argument("--budget-s", type=float, default=None, help="seconds for the whole run (default 450; 120 tiny)")
    p.add_argument("--no-served", action="store_true", help="skip the Triton section")
    args = p.parse_args(argv)
    plan = cpu_tiny_plan() if args.cpu_tiny else full_plan()
    if args.budget_s is not None:
        if args.budget_s <= 0:
            p.error(f"--budget-s must be positive, got {args.budget_s}")
        plan = dataclasses.replace(plan, budget_s=args.budget_s)
    if args.no_served:
        plan = dataclasses.replace(plan, served=False)
    report = run_check(plan, args.out, "cpu-tiny" if args.cpu_tiny else "full")
    print(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
