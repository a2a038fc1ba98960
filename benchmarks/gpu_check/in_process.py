"""The sections of the GPU check measured in this process: training throughput, and decode and hybrid-sample
latency of the untrained model in ``eager``, ``compiled`` and ``cuda_graph`` modes."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.gpu_check.plan import MODES, PATHS, CheckPlan, Clock, _error
from sae.serving.bench.timing import run_cell, warm_up


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
            result, trainer = measure(
                plan.train_config,
                data,
                plan.device,
                plan.train_warmup,
                plan.train_steps,
                plan.train_batch_size,
                compile_step,
            )
            trainer.data.close()
            results.append({**entry, **dataclasses.asdict(result), "wall_s": time.monotonic() - started})
        except Exception as e:
            results.append({**entry, "error": _error(e)})
        print(f"train compile={compile_step}: {results[-1].get('images_per_second', results[-1])}", flush=True)
    return results


# ------------------------------------------------------------------------------------------------ model and bank


def untrained_model(config_name: str, device: str):
    from sae.training.config import get_config
    from sae.training.models.zoo import build_model

    torch.manual_seed(0)
    return build_model(get_config(config_name).model).to(device).eval()


def synthetic_bank(model, model_name: str = "untrained", size: int = 128, seed: int = 0):
    """A bank of standard-normal latents with the model's partition: the draw and the decoder cost the same."""
    from sae.export.bank import Bank, variable_of_dim

    latents = np.random.default_rng(seed).standard_normal((size, model.cfg.latent_dim)).astype(np.float32)
    return Bank(
        latents=latents,
        variable_of_dim=variable_of_dim(model.cfg.variable_sizes),
        source_indices=np.arange(size, dtype=np.int64),
        seed=seed,
        model_name=model_name,
        dim_min=latents.min(axis=0),
        dim_max=latents.max(axis=0),
        data_sha256="synthetic",
        checkpoint_sha256="untrained",
        checkpoint_step=0,
        num_train_images=size,
    )


# ------------------------------------------------------------------------------------------------ in-process


def _runner(mode: str, decode_graph, plan: CheckPlan, latent_dim: int):
    from sae.repository.templates.torch_model import TorchRunner

    module = decode_graph
    if mode == "compiled":
        module = torch.compile(decode_graph, dynamic=False)
    sizes = plan.batch_sizes if mode == "cuda_graph" else ()
    return TorchRunner(module, plan.device, plan.precision, sizes, np.zeros(latent_dim, np.float32))


def in_process_section(plan: CheckPlan, clock: Clock, model, bank) -> list[dict]:
    from sae.export.graphs import DecodeGraph
    from sae.repository.templates.sampler_model import draw_hybrid

    decode_graph = DecodeGraph(model).eval()
    cells = []
    for mode in MODES:
        base = {"mode": mode}
        if mode != "eager" and not plan.cuda:
            cells += [
                {**base, "path": p, "batch_size": b, "skipped": f"{mode} is measured on CUDA only"}
                for p in PATHS
                for b in plan.batch_sizes
            ]
            continue
        try:
            runner = _runner(mode, decode_graph, plan, bank.latent_dim)
        except Exception as e:
            cells += [{**base, "path": p, "batch_size": b, "error": _error(e)} for p in PATHS for b in plan.batch_sizes]
            continue
        for batch in plan.batch_sizes:
            latents = bank.latents[np.resize(np.arange(len(bank.latents)), batch)]
            calls = {
                "decode": lambda z=latents: runner.run(z),
                "hybrid_sample": lambda n=batch: runner.run(
                    draw_hybrid(bank.latents, bank.variable_of_dim, n, seed=0)[0]
                ),
            }
            for path in PATHS:
                entry = {**base, "path": path, "batch_size": batch}
                if (reason := clock.over()) is not None:
                    cells.append({**entry, "skipped": reason})
                    continue
                try:
                    warm_up(calls[path], max(plan.cell.warmup_requests, 1))  # compiles each shape once
                    stats = run_cell([calls[path]], batch, plan.cell)
                    cells.append({**entry, **stats.to_dict()})
                except Exception as e:
                    cells.append({**entry, "error": _error(e)})
                print(f"in-process {mode} {path} b{batch}: p50 {cells[-1].get('p50_ms')} ms", flush=True)
    return cells
