"""The served graphs: thin wrappers that fix the wire formats around the trained encoder and decoder.

encode: uint8 images [B, H, W, 3] (the datasets' own layout) -> latent [B, D]
decode: latent [B, D] -> float32 images [B, H, W, 3] in [0, 1]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sae.core import wire
from sae.training.models.autoencoder import Autoencoder

ONNX_OPSET = 17  # GroupNorm and Mish decompose into ops every runtime supports (see the notes on opset 18/21)


class EncodeGraph(nn.Module):
    """``model.encode`` is the deterministic code (the posterior mean for variational models)."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model.encode(self.model.preprocess(image))  # the model's own preprocessing, in the graph


class DecodeGraph(nn.Module):
    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model.decode(latent)).permute(0, 2, 3, 1)


@dataclass
class GraphSpec:
    module: nn.Module
    example: torch.Tensor
    input_name: str
    output_name: str


def graph_specs(model: Autoencoder) -> dict[str, GraphSpec]:
    size = model.cfg.backbone.image_size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8, generator=gen)
    latents = torch.randn(2, model.cfg.latent_dim, generator=gen)
    return {
        wire.ENCODE: GraphSpec(EncodeGraph(model).eval(), images, wire.IMAGE, wire.LATENT),
        wire.DECODE: GraphSpec(DecodeGraph(model).eval(), latents, wire.LATENT, wire.IMAGE),
    }


def export_onnx(spec: GraphSpec, path: Path) -> None:
    """Export with a dynamic batch axis (legacy TorchScript-based exporter; opset 17)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            spec.module,
            (spec.example,),
            str(path),
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            opset_version=ONNX_OPSET,
            dynamo=False,
            dynamic_axes={spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}},
        )


def graph_input(spec: GraphSpec, batch_size: int, seed: int = 0) -> torch.Tensor:
    """A fresh input of ``batch_size`` rows for ``spec``: random uint8 images, or standard-normal latents."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, *spec.example.shape[1:])
    if spec.example.dtype == torch.uint8:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    return torch.randn(shape, generator=gen, dtype=spec.example.dtype)


def onnx_max_abs_diff(spec: GraphSpec, path: Path, batch_sizes=(1, 7)) -> float:
    """Largest |eager - ONNX Runtime| over fresh inputs of several batch sizes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in batch_sizes:
        x = graph_input(spec, b, seed=b)
        with torch.no_grad():
            expected = spec.module(x).numpy()
        got = session.run(None, {spec.input_name: x.numpy()})[0]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst
