"""The served graphs run in this process by ONNX Runtime: the baseline that gRPC latencies are divided by.

It reads the same files the server loads from the exported repository: each model's ``model.onnx``, and for
hybrid sampling the sampler's ``bank.h5`` and its ``draw_hybrid`` (the served ``model.py``, loaded as a module), so
the in-process path does exactly the server's work minus Triton and the network. ONNX Runtime sessions get the
same thread settings as the served instances (the ``intra_op_threads`` parameter of each model's config, and
``allow_spinning`` where a config sets it).
onnxruntime is imported lazily: the rest of ``clients`` does not need it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sae.core import wire
from sae.core.bank_file import BANK_FILE, BankFile, BankFileError
from sae.core.errors import SAEError
from sae.serving.bench.config import BenchConfig


class RepositoryError(SAEError, ValueError):
    """The repository lacks a file the in-process runner needs; the message names the model and the file."""


class RuntimeUnavailable(RepositoryError):
    """The device asked for has no ONNX Runtime provider here (``--device cuda`` without onnxruntime-gpu)."""


def read_config(repo: Path, model: str) -> dict:
    """A model's config.pbtxt as the same JSON-like dict the server's get_model_config(as_json=True) returns."""
    from sae.core.model_config import config_dict
    from sae.core.model_config import read_config as parse_config

    path = repo / model / "config.pbtxt"
    if not path.is_file():
        raise RepositoryError(f"model {model!r}: {path} is missing")
    return config_dict(parse_config(path))


def version_dir(repo: Path, model: str) -> Path:
    """The highest numbered version folder (the one Triton serves by default)."""
    folder = repo / model
    versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()] if folder.is_dir() else []
    if not versions:
        raise RepositoryError(f"model {model!r}: no version folder under {folder}")
    return max(versions, key=lambda p: int(p.name))


def ensemble_steps(config: dict) -> list[str]:
    return [step["model_name"] for step in config.get("ensemble_scheduling", {}).get("step", [])]


def load_sampler_module(path: Path) -> ModuleType:
    """The served sampler's model.py, as a module (its Triton import happens inside initialize(), not at import)."""
    spec = importlib.util.spec_from_file_location(f"_served_sampler_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise RepositoryError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise RepositoryError(
            f"{path} cannot be imported outside Triton ({e}); the in-process hybrid_sample needs "
            "its draw_hybrid function"
        ) from e
    if not hasattr(module, "draw_hybrid"):
        raise RepositoryError(f"{path} has no draw_hybrid function for the in-process hybrid_sample")
    return module


@dataclass
class OnnxModel:
    name: str  # the served model this graph belongs to
    path: Path
    intra_op_threads: int
    allow_spinning: str | None  # the config's allow_spinning parameter; None: ONNX Runtime's default
    session: Any  # onnxruntime.InferenceSession (ONNX Runtime ships no type information)
    input_name: str
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def run(self, array: np.ndarray) -> np.ndarray:
        outputs: list[np.ndarray] = self.session.run(None, {self.input_name: array})
        return outputs[0]

    def settings(self) -> dict:
        return {
            "model": self.name,
            "file": str(self.path),
            "intra_op_threads": self.intra_op_threads,
            "allow_spinning": self.allow_spinning,
            "providers": list(self.providers),
        }


def load_onnx_model(repo: Path, model: str, device: str = "cpu") -> OnnxModel:
    """The graph a served instance on ``device`` runs (``gpu_onnx_file`` on CUDA, as model.py picks it)."""
    import onnxruntime as ort

    config = read_config(repo, model)
    params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
    providers = ["CPUExecutionProvider"]
    filename = params.get("onnx_file", "model.onnx")
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeUnavailable(
                f"--device cuda: onnxruntime {ort.__version__} here has no "
                "CUDAExecutionProvider (install onnxruntime-gpu for a CUDA baseline)"
            )
        providers.insert(0, "CUDAExecutionProvider")
        filename = params.get("gpu_onnx_file", filename)
    path = version_dir(repo, model) / filename
    if not path.is_file():
        raise RepositoryError(f"model {model!r}: {path} is missing; run `sae export` first")
    threads = int(params.get("intra_op_threads", "1"))  # model.py's default
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = params.get("cpu_mem_arena", "1") != "0"
    spinning = params.get("allow_spinning")  # ONNX Runtime's default (spin) unless the served config says otherwise
    if spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    session = ort.InferenceSession(str(path), options, providers=providers)
    return OnnxModel(model, path, threads, spinning, session, session.get_inputs()[0].name, tuple(providers))


class InProcessRunner:
    """encode, decode, reconstruct (encoder then decoder) and hybrid_sample (the sampler's numpy draw then the
    decoder), as one Python call each."""

    def __init__(self, repo: Path, config: BenchConfig):
        self.repo = Path(repo)
        reconstruct_steps = ensemble_steps(read_config(self.repo, config.model_name(wire.RECONSTRUCT)))
        sample_steps = ensemble_steps(read_config(self.repo, config.model_name(wire.HYBRID_SAMPLE)))
        encode_name = reconstruct_steps[0] if reconstruct_steps else config.model_name(wire.ENCODE)
        decode_name = sample_steps[-1] if sample_steps else config.model_name(wire.DECODE)
        sampler_name = sample_steps[0] if sample_steps else config.model_name(wire.SAMPLER)
        self.encoder = load_onnx_model(self.repo, encode_name, config.device)
        self.decoder = load_onnx_model(self.repo, decode_name, config.device)
        sampler_dir = version_dir(self.repo, sampler_name)
        self.bank_path = sampler_dir / BANK_FILE
        if not self.bank_path.is_file():
            raise RepositoryError(f"model {sampler_name!r}: {self.bank_path} is missing; run `sae export` first")
        try:
            bank = BankFile.read(self.bank_path)
        except BankFileError as e:
            raise RepositoryError(f"model {sampler_name!r}: {e}") from e
        self.bank = np.asarray(bank.latents, np.float32)
        self.variable_of_dim = np.asarray(bank.variable_of_dim, np.int64)
        self.sampler_code = sampler_dir / "model.py"
        self._draw = load_sampler_module(self.sampler_code).draw_hybrid

    def settings(self) -> dict:
        return {
            "repository": str(self.repo),
            "encoder": self.encoder.settings(),
            "decoder": self.decoder.settings(),
            "sampler": {"code": str(self.sampler_code), "bank": str(self.bank_path), "bank_size": int(len(self.bank))},
        }

    def call(self, path: str, inputs: dict[str, np.ndarray]) -> Callable[[], dict]:
        """A callable doing one request's work on ``inputs`` (the wire inputs, as sent over gRPC)."""
        if path == wire.ENCODE:
            images = inputs[wire.IMAGE]
            return lambda: {wire.LATENT: self.encoder.run(images)}
        if path == wire.DECODE:
            latents = inputs[wire.LATENT]
            return lambda: {wire.IMAGE: self.decoder.run(latents)}
        if path == wire.RECONSTRUCT:
            images = inputs[wire.IMAGE]
            return lambda: {wire.RECONSTRUCTION: self.decoder.run(self.encoder.run(images))}
        if path == wire.HYBRID_SAMPLE:
            n, seed = int(inputs[wire.NUM_SAMPLES][0]), int(inputs[wire.SEED][0])

            def sample() -> dict:
                latents, source = self._draw(self.bank, self.variable_of_dim, n, seed)  # the served default draw
                return {wire.IMAGE: self.decoder.run(latents), wire.LATENT: latents, wire.SOURCE_INDEX: source}

            return sample
        raise ValueError(f"unknown path {path!r}")
