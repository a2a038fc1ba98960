"""`sae export`: checkpoint -> one model's set of Triton models, built into a staging folder and installed.

Writes ``NAME_encode``, ``NAME_decode`` (ONNX fp32 + fp16 + TorchScript, each checked against the eager model),
``NAME_reconstruct`` (the two graphs joined, checked against them run apart), ``NAME_sampler`` and
``NAME_traverse`` (python backend + the bank), and ``NAME_hybrid_sample`` (python flavour: the sampler's code with the
bank, decoding through ``NAME_decode``, or with the decoder graphs beside it; native: one ONNX graph of draw and
decoder), with configs generated for the model's
real dims (``sae.repository.configs``). Models with a prior (the bank records it) also get ``NAME_prior_sampler`` and
``NAME_prior_sample``; re-exporting a name as a model without a prior removes that name's old prior models.

This module makes the artefacts; the repository package lays them out, checks them and swaps them in
(``sae.repository.install``: atomic per model folder, versioned, reversible with ``sae export --rollback``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from sae.core.datasets import dataset_splits, open_dataset
from sae.core.draw import NATIVE_DRAW_MODES
from sae.core.errors import SAEError
from sae.export.bank import DEFAULT_BANK_SIZE, Bank, build_bank
from sae.export.composed import check_reconstruction, write_reconstruction_graph
from sae.export.draw_graph import hybrid_sample_model
from sae.export.fp16 import write_fp16_onnx
from sae.export.graphs import ONNX_OPSET, export_onnx, graph_specs
from sae.export.parity import ParityResult, compare
from sae.export.torchscript import export_torchscript
from sae.repository.configs import RepositoryOptions, ServedShapes, model_configs
from sae.repository.install import (
    bank_roles,
    check_ownership,
    finish_interrupted,
    install_model_set,
    next_version,
    staging_folder,
    write_config,
    write_python_backend,
)
from sae.repository.layout import (
    BANK_FILE,
    HYBRID_ONNX_FILE,
    HYBRID_ONNX_FP16_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    ONNX_FP16_FILE,
    TORCHSCRIPT_FILE,
)
from sae.repository.validate import check_repository
from sae.training.checkpoint import LAST, Checkpoint, resolve_checkpoint

EXPORT_PARITY_BATCHES = (1, 7)  # checked at every export; tests/test_parity.py adds 256
JOINED_GRAPH_TOLERANCE = 1e-5  # joined reconstruction graph vs encode and decode run apart: measured 0


class ExportError(SAEError, RuntimeError):
    """The run cannot be exported (no data, a size mismatch, a graph that differs from the eager model)."""


@dataclass
class ExportReport:
    repository: Path
    export_name: str
    config_name: str
    step: int
    flavour: str
    models: list[str]
    parity: list[ParityResult] = field(default_factory=list)
    bank_size: int = 0
    version: int = 1  # the version folder written (every model of the set has it)

    @property
    def max_abs_diff(self) -> dict[str, float]:
        """Worst |eager - ONNX Runtime fp32| per graph (the figure `sae export` prints first)."""
        return {
            g: max(r.max_abs_diff for r in self.parity if r.graph == g and r.runtime == "onnx")
            for g in ("encode", "decode")
        }

    def worst(self) -> dict[str, float]:
        """Worst |diff| per graph and runtime."""
        out: dict[str, float] = {}
        for r in self.parity:
            key = f"{r.graph}/{r.runtime}"
            out[key] = max(out.get(key, 0.0), r.max_abs_diff)
        return out


def checkpoint_file(run: Path) -> Path:
    return resolve_checkpoint(Path(run), LAST)


def _manifest(
    options: RepositoryOptions, role: str, ckpt: Checkpoint, bank: Bank, parity: list[ParityResult], source: Path
) -> str:
    import onnx
    import onnxruntime

    return json.dumps(
        {
            "export_name": options.name,
            "model": options.model_name(role),
            "role": role,
            "flavour": options.flavour,
            "config_name": ckpt.config.name,
            "model_kind": ckpt.config.model.kind,
            "checkpoint": str(source),
            "checkpoint_sha256": bank.checkpoint_sha256,
            "checkpoint_step": ckpt.step,
            "data_sha256": bank.data_sha256,
            "bank_size": int(len(bank.latents)),
            "bank_seed": bank.seed,
            "onnx_opset": ONNX_OPSET,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parity": [
                {"graph": r.graph, "runtime": r.runtime, "batch_size": r.batch_size, "max_abs_diff": r.max_abs_diff}
                for r in parity
            ],
        },
        indent=2,
    )


def _write_graphs(model, version_dirs: dict[str, Path], batch_sizes=EXPORT_PARITY_BATCHES) -> list[ParityResult]:
    """ONNX fp32, ONNX fp16 and TorchScript for encode and decode, each compared with the eager model."""
    results: list[ParityResult] = []
    for graph, spec in graph_specs(model).items():
        folder = version_dirs[graph]
        files = {
            "onnx": folder / ONNX_FILE,
            "onnx_fp16": folder / ONNX_FP16_FILE,
            "torchscript": folder / TORCHSCRIPT_FILE,
        }
        export_onnx(spec, files["onnx"])
        write_fp16_onnx(files["onnx"], files["onnx_fp16"])
        export_torchscript(spec, files["torchscript"])
        checked = compare(graph, spec, files, batch_sizes)
        failed = [str(r) for r in checked if not r.ok]
        if failed:
            raise ExportError("exported graph differs from the eager model: " + "; ".join(failed))
        results += checked
    return results


def _write_joined_graphs(
    options: RepositoryOptions, configs: dict, names: dict[str, str], version_dirs: dict[str, Path], bank: Bank
) -> None:
    """The one-hop models' graphs: the joined reconstruction graph (fp32, fp16); the decoder beside a python
    hybrid/prior sampler that decodes in its own process; the native hybrid_sample graph (draw + decoder)."""
    decode_dir = version_dirs["decode"]
    if configs[names["reconstruct"]].platform != "ensemble":
        folder, encode_dir = version_dirs["reconstruct"], version_dirs["encode"]
        for filename in (ONNX_FILE, ONNX_FP16_FILE):
            write_reconstruction_graph(encode_dir / filename, decode_dir / filename, folder / filename)
        size = configs[names["reconstruct"]].input[0].dims[0]
        images = np.random.default_rng(0).integers(0, 256, (7, size, size, 3), dtype=np.uint8)
        diff = check_reconstruction(encode_dir / ONNX_FILE, decode_dir / ONNX_FILE, folder / ONNX_FILE, images)
        if diff > JOINED_GRAPH_TOLERANCE:
            raise ExportError(f"the joined reconstruction graph differs from encode -> decode by {diff:.2e}")
    for role in ("hybrid_sample", "prior_sample"):
        config = configs.get(names.get(role, ""))
        if config is None or config.platform == "ensemble":
            continue
        if config.backend == "python":
            if "onnx_file" not in config.parameters:  # it decodes through NAME_decode (BLS)
                continue
            for filename in (ONNX_FILE, ONNX_FP16_FILE):
                shutil.copyfile(decode_dir / filename, version_dirs[role] / filename)
            continue
        for decoder, graph in ((ONNX_FILE, HYBRID_ONNX_FILE), (ONNX_FP16_FILE, HYBRID_ONNX_FP16_FILE)):
            model = hybrid_sample_model(
                onnx.load(str(decode_dir / decoder)),
                bank.latents,
                bank.variable_of_dim,
                config.output[0].dims[1],
                NATIVE_DRAW_MODES[0],
            )
            onnx.save(model, str(version_dirs[role] / graph))


def export_run(
    run: Path,
    repo: Path,
    data_path: Path | None = None,
    bank_size: int = DEFAULT_BANK_SIZE,
    bank_seed: int = 0,
    name: str = "",
    flavour: str = "python",
    options: RepositoryOptions | None = None,
    validate: Callable[[Path], object] | None = check_repository,
    range_images: int | None = None,
) -> ExportReport:
    """Export RUN (a run folder or a checkpoint file) into ``repo`` as the model set ``name``.

    ``options`` overrides ``name``/``flavour`` and carries the rest (native runtime, TensorRT, batching).
    ``validate(staging_repo)`` checks the staged set and may raise to stop the export before anything in ``repo``
    changes; by default it is the repository's own check (``sae validate``); None skips it.
    ``range_images``: take the bank's per-dimension ranges over this many training images (default: all of them).
    """
    options = (options or RepositoryOptions(name=name, flavour=flavour)).validate()
    repo = Path(repo)
    source = checkpoint_file(run)
    ckpt = Checkpoint.load(run)
    cfg = ckpt.config
    model = ckpt.eval_model()
    data_path = data_path or (ckpt.extra or {}).get("data_path")
    if not data_path:
        raise ExportError("the checkpoint does not say which data it was trained on; pass --data FILE")
    data = open_dataset(Path(data_path), exclude=(ckpt.extra or {}).get("exclude"))
    if data.image_size != cfg.model.backbone.image_size:
        raise ExportError(
            f"{data_path} has {data.image_size}px images; {cfg.name} takes {cfg.model.backbone.image_size}px"
        )
    finish_interrupted(repo)  # a set half installed when a kill came: whole again before the next version
    if repo.exists():
        check_ownership(repo, options)

    with staging_folder(repo) as staging:
        names = options.model_names()
        version = next_version(repo, options)
        version_dirs = {role: staging / names[role] / str(version) for role in names}
        for role in ("encode", "decode"):
            version_dirs[role].mkdir(parents=True)
        parity = _write_graphs(model, version_dirs)
        bank = build_bank(
            model,
            cfg.name,
            data,
            dataset_splits(data)["train"],
            source,
            ckpt.step,
            bank_size,
            bank_seed,
            range_images=range_images,
        )
        shapes = ServedShapes(
            cfg.model.backbone.image_size,
            cfg.model.latent_dim,
            bank.num_variables,
            bank_size=len(bank.latents),
            has_prior=bank.prior_mean is not None,
        )
        roles = shapes.roles()
        for role in roles:
            version_dirs[role].mkdir(parents=True, exist_ok=True)
        configs = model_configs(shapes, options)
        python_models = {role for role in roles if configs[names[role]].backend == "python"}
        bank_users = bank_roles(python_models)
        bank.save(version_dirs[bank_users[0]] / BANK_FILE)
        for role in bank_users[1:]:
            shutil.copyfile(version_dirs[bank_users[0]] / BANK_FILE, version_dirs[role] / BANK_FILE)
        _write_joined_graphs(options, configs, names, version_dirs, bank)
        for role in python_models:
            write_python_backend(role, version_dirs[role])
        for role in roles:
            write_config(
                staging / names[role],
                version_dirs[role],
                configs[names[role]],
                role,
                f"{cfg.name} step {ckpt.step} (version {version})",
            )
            (version_dirs[role] / MANIFEST_FILE).write_text(_manifest(options, role, ckpt, bank, parity, source))
        order = install_model_set(staging, repo, options, roles, version, validate)
    return ExportReport(
        repo, options.name, cfg.name, ckpt.step, options.flavour, order, parity, len(bank.latents), version
    )
