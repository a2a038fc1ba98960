"""The checks of one model file against its ``config.pbtxt``, and the problem record every check reports.

* ONNX files (``onnxruntime_onnx`` platform, or a python model's ``onnx_file``/``gpu_onnx_file`` parameter): input
  and output names, data types and dims, with a dynamic batch axis when ``max_batch_size > 0``;
* TorchScript files (``pytorch_libtorch``): loaded and run on a zero input of the configured shape, outputs checked.

:class:`FileChecker` collects the :class:`Problem` list; :mod:`sae.repository.validate` builds the repository walk,
the python-backend and the ensemble checks on it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

# Triton data types -> ONNX TensorProto element types (onnx.TensorProto values)
_ONNX_TYPES = {
    "TYPE_BOOL": 9,
    "TYPE_UINT8": 2,
    "TYPE_INT8": 3,
    "TYPE_INT16": 5,
    "TYPE_INT32": 6,
    "TYPE_INT64": 7,
    "TYPE_FP16": 10,
    "TYPE_FP32": 1,
    "TYPE_FP64": 11,
    "TYPE_STRING": 8,
    "TYPE_BF16": 16,
}


@dataclass(frozen=True)
class Problem:
    model: str
    field: str
    message: str
    severity: str = "error"  # or "warning": reported, but the repository still counts as valid

    def __str__(self) -> str:
        return f"{self.model}: {self.field}: {self.message}"


def dtype_name(value: int) -> str:
    return pb.DataType.Name(value)


def full_shape(config: pb.ModelConfig, dims) -> list[int]:
    """The tensor's whole shape as Triton sees it: ``[-1] + dims`` when the model batches."""
    return ([-1] if config.max_batch_size > 0 else []) + list(dims)


def shapes_compatible(a: list[int], b: list[int]) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


class FileChecker:
    """The problems found in a repository so far, and the checks of one ONNX or TorchScript file."""

    def __init__(self, repo: Path):
        self.repo = Path(repo)
        self.problems: list[Problem] = []

    def add(self, model: str, field: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(model, field, message, severity))

    def _file(self, name: str, field: str, path: Path) -> bool:
        if not path.is_file():
            self.add(name, field, f"{path.relative_to(self.repo)} is missing")
            return False
        return True

    # ------------------------------------------------------------------------------------------- ONNX

    def check_onnx(self, name: str, config: pb.ModelConfig, path: Path, field: str) -> None:
        if not self._file(name, field, path):
            return
        import onnx

        try:
            graph = onnx.load(str(path), load_external_data=False).graph
        except Exception as e:  # onnx raises DecodeError and others for damaged files
            self.add(name, field, f"{path.name} is not a readable ONNX model: {e}")
            return
        initializers = {i.name for i in graph.initializer}
        found = {
            "input": {v.name: v for v in graph.input if v.name not in initializers},
            "output": {v.name: v for v in graph.output},
        }
        for kind, tensors in (("input", config.input), ("output", config.output)):
            declared = {t.name for t in tensors}
            for extra in sorted(set(found[kind]) - declared):
                if kind == "input":
                    self.add(name, "input", f"{path.name} has input {extra!r}, which the config does not declare")
            for t in tensors:
                value = found[kind].get(t.name)
                if value is None:
                    self.add(
                        name,
                        f"{kind} {t.name}",
                        f"{path.name} has no {kind} of that name (it has {sorted(found[kind])})",
                    )
                    continue
                tensor_type = value.type.tensor_type
                want = _ONNX_TYPES.get(dtype_name(t.data_type))
                if tensor_type.elem_type != want:
                    found_type = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
                    self.add(
                        name,
                        f"{kind} {t.name} data_type",
                        f"config {dtype_name(t.data_type)}, {path.name} {found_type}",
                    )
                axes = tensor_type.shape.dim
                onnx_dims = [d.dim_value if d.HasField("dim_value") else -1 for d in axes]
                shown = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in axes]
                if config.max_batch_size > 0 and onnx_dims and onnx_dims[0] != -1:
                    self.add(
                        name,
                        "max_batch_size",
                        f"{config.max_batch_size} > 0 needs a dynamic first axis, but "
                        f"{path.name} fixes {kind} {t.name} to {shown}",
                    )
                elif not shapes_compatible(full_shape(config, t.dims), onnx_dims):
                    self.add(
                        name,
                        f"{kind} {t.name} dims",
                        f"config {list(t.dims)} (max_batch_size {config.max_batch_size}), {path.name} {shown}",
                    )

    # ------------------------------------------------------------------------------------------- TorchScript

    def check_torchscript(self, name: str, config: pb.ModelConfig, path: Path) -> None:
        if not self._file(name, "default_model_filename", path):
            return
        import numpy as np
        import torch
        from tritonclient.utils import triton_to_np_dtype

        try:
            extra = {"torch_version": ""}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation notice
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
        except Exception as e:  # torch raises RuntimeError and others for foreign files
            self.add(name, "default_model_filename", f"{path.name} is not a loadable TorchScript file: {e}")
            return
        made_with = (
            extra["torch_version"].decode() if isinstance(extra["torch_version"], bytes) else extra["torch_version"]
        )
        if made_with and made_with.split("+")[0] != torch.__version__.split("+")[0]:
            self.add(
                name,
                "default_model_filename",
                f"{path.name} was made with torch {made_with}, checked with "
                f"{torch.__version__}; serve it with a matching libtorch",
                "warning",
            )
        inputs = []
        for t in config.input:
            shape = [1 if d == -1 else d for d in full_shape(config, t.dims)]
            inputs.append(torch.from_numpy(np.zeros(shape, triton_to_np_dtype(dtype_name(t.data_type)[5:]))))
        try:
            with torch.no_grad():
                out = module(*inputs)
        except Exception as e:  # a shape or dtype the traced graph cannot take
            self.add(
                name,
                "input",
                f"{path.name} fails on zeros of the configured input shapes: {str(e).splitlines()[0][:300]}",
            )
            return
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(outs) != len(config.output):
            self.add(name, "output", f"config declares {len(config.output)} outputs, {path.name} returns {len(outs)}")
            return
        for t, value in zip(config.output, outs):
            want = triton_to_np_dtype(dtype_name(t.data_type)[5:])
            if value.numpy().dtype != want:
                self.add(
                    name,
                    f"output {t.name} data_type",
                    f"config {dtype_name(t.data_type)}, {path.name} returns {value.dtype}",
                )
            if not shapes_compatible(full_shape(config, t.dims), list(value.shape)):
                self.add(
                    name,
                    f"output {t.name} dims",
                    f"config {list(t.dims)}, {path.name} returns {list(value.shape)} for a batch of 1",
                )
