"""The served section of the GPU check: decode and hybrid_sample through the bundled Triton server, whose decode is
the TorchScript graph run by PyTorch in the python backend, in a small repository built here."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.gpu_check.in_process import untrained_model
from benchmarks.gpu_check.plan import PATHS, CheckPlan, Clock, _error
from sae.core import wire
from sae.serving.bench.timing import run_cell, warm_up

SERVED_NAME = "gpu"


def build_served_repository(repo: Path, model, bank, plan: CheckPlan) -> dict[str, str]:
    """decode (TorchScript run by torch_model.py), sampler and hybrid_sample, configs from the export's generator
    with decode's runtime parameters and instance kind changed. hybrid_sample is the ensemble sampler -> decode, so
    that its decoder is the torch one on the GPU (the export's one-hop python model runs the ONNX decoder, on the CPU
    where onnxruntime-gpu is absent). Returns {role: served model name}."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from sae.export.graphs import graph_specs
    from sae.export.torchscript import export_torchscript
    from sae.repository.configs import RepositoryOptions, ServedShapes, model_configs, sampling_ensemble
    from sae.repository.layout import BANK_FILE, PYTHON_FILE, TORCHSCRIPT_FILE
    from sae.repository.templates import COMMON, COMMON_FILE, COMPANIONS, ONNX_MODEL, SAMPLER_MODEL, TORCH_MODEL
    from sae.repository.templates.torch_model import REQUEST_CHECKS_FILE

    cpu_model = untrained_model(plan.model_config, "cpu")
    cpu_model.load_state_dict(model.state_dict())
    shapes = ServedShapes(
        cpu_model.cfg.backbone.image_size, cpu_model.cfg.latent_dim, bank.num_variables, bank_size=len(bank.latents)
    )
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
    shutil.copyfile(COMMON, decode_dir / COMMON_FILE)  # the request checks' BadRequest
    sampler_dir = repo / names["sampler"] / "1"
    shutil.copyfile(SAMPLER_MODEL, sampler_dir / PYTHON_FILE)
    for companion, source in COMPANIONS.items():
        shutil.copyfile(source, sampler_dir / companion)
    bank.save(sampler_dir / BANK_FILE)
    image = [shapes.image_size, shapes.image_size, 3]
    configs[names["hybrid_sample"]] = sampling_ensemble(
        names["hybrid_sample"], names["sampler"], names["decode"], configs[names["sampler"]], image
    )

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
        return (
            f"numpy {np.__version__} here: the bundled python backend returns empty tensors with numpy 2; set "
            "SAE_SERVER_PYTHONPATH to a folder holding numpy<2 for the server's stubs"
        )
    return None


def served_section(plan: CheckPlan, clock: Clock, model, bank, work: Path) -> dict:
    if not plan.served:
        return {"skipped": "turned off (--no-served)", "cells": []}
    if (reason := served_blocker(plan) or clock.over()) is not None:
        return {"skipped": reason, "cells": []}
    from sae.serving.bench.grpc_runner import GrpcRunner
    from sae.serving.triton import ServerConfig, TritonServer

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
                            inputs = {wire.LATENT: np.ascontiguousarray(bank.latents[rows])}
                        else:
                            inputs = {wire.NUM_SAMPLES: np.array([batch], np.int64), wire.SEED: np.array([0], np.int64)}
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
                            except Exception as e:
                                section["cells"].append({**entry, "error": _error(e)})
                            print(
                                f"served {path} b{batch} c{concurrency}: "
                                f"{section['cells'][-1].get('items_per_s')} items/s",
                                flush=True,
                            )
    except Exception as e:
        section["error"] = _error(e)
    finally:
        if extra:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    return section
