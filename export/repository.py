"""`sae export`: checkpoint -> ONNX graphs and the latent bank, written into the Triton model repository."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.bank import DEFAULT_BANK_SIZE, build_bank
from export.graphs import export_onnx, graph_specs, onnx_max_abs_diff
from training.checkpoint import Checkpoint
from clients.datasets import H5Images, split_indices
from training.models.autoencoder import build_model

ONNX_TOLERANCE = 1e-3  # fp32 eager vs ONNX Runtime; measured differences are ~1e-5


class ExportError(RuntimeError):
    pass


@dataclass
class ExportReport:
    repository: Path
    config_name: str
    step: int
    max_abs_diff: dict[str, float]
    bank_size: int


def read_model_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _check_served_shapes(repo: Path, image_size: int, latent_dim: int) -> None:
    """The committed configs fix the wire shapes; refuse a model that does not fit them."""
    expected = {("encode", "input", "IMAGE"): [image_size, image_size, 3], ("encode", "output", "LATENT"): [latent_dim],
                ("decode", "input", "LATENT"): [latent_dim], ("decode", "output", "IMAGE"): [image_size, image_size, 3]}
    for (model, kind, tensor), dims in expected.items():
        path = repo / model / "config.pbtxt"
        if not path.is_file():
            raise ExportError(f"{path} is missing: --repo must point at the project's model_repository")
        found = {t.name: list(t.dims) for t in getattr(read_model_config(path), kind)}
        if found.get(tensor) != dims:
            raise ExportError(f"{path}: {kind} {tensor} has dims {found.get(tensor)}, but this model needs {dims}")


def _replace(tmp: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def export_run(run: Path, repo: Path, data_path: Path | None = None, bank_size: int = DEFAULT_BANK_SIZE,
               bank_seed: int = 0) -> ExportReport:
    ckpt = Checkpoint.load(run)
    cfg = ckpt.config
    model = build_model(cfg.model)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    repo = Path(repo)
    _check_served_shapes(repo, cfg.model.backbone.image_size, cfg.model.latent_dim)

    data_path = data_path or (ckpt.extra or {}).get("data_path")
    if not data_path:
        raise ExportError("the checkpoint does not say which data it was trained on; pass --data FILE")
    data = H5Images(Path(data_path))

    diffs: dict[str, float] = {}
    staged: list[tuple[Path, Path]] = []
    for name, spec in graph_specs(model).items():
        final = repo / name / "1" / "model.onnx"
        tmp = final.with_suffix(".onnx.tmp")
        final.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(spec, tmp)
        diffs[name] = onnx_max_abs_diff(spec, tmp)
        if not diffs[name] <= ONNX_TOLERANCE:
            tmp.unlink()
            raise ExportError(f"{name}: ONNX Runtime differs from eager by {diffs[name]:.2e} > {ONNX_TOLERANCE}")
        staged.append((tmp, final))

    bank = build_bank(model, cfg.name, data, split_indices(len(data))["train"], bank_size, bank_seed)
    bank_final = repo / "sampler" / "1" / "bank.h5"
    bank_tmp = bank_final.with_suffix(".h5.tmp")
    bank.save(bank_tmp)
    staged.append((bank_tmp, bank_final))
    for tmp, final in staged:  # only now, when every artefact is ready, replace the served ones
        _replace(tmp, final)
    return ExportReport(repo, cfg.name, ckpt.step, diffs, len(bank.latents))

