"""fp32 -> fp16 conversion of an exported graph with ONNX Runtime's converter
(``onnxruntime.transformers.float16.convert_float_to_float16``).

The graph's inputs and outputs keep their fp32 types (``keep_io_types``: Cast nodes at the edges). Normalisation and
``exp``-based ops stay in fp32 (``FP32_OPS``: their reductions and overflow-prone ranges need it), together with the
converter's own block list; every other float computation, initializer and constant becomes fp16, with constants
clamped to the fp16 range, and Cast nodes wherever a tensor crosses between the two.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
from onnxruntime.transformers.onnx_model import OnnxModel

FP32_OPS = frozenset(
    {
        "InstanceNormalization",
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",  # normalisation
        "ReduceMean",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceLogSumExp",
        "Exp",
        "Softplus",
        "Log",
        "Pow",
        "Sqrt",
        "Softmax",
        "LogSoftmax",  # exp / large dynamic range
    }
)
OP_BLOCK_LIST = sorted(FP32_OPS | set(DEFAULT_OP_BLOCK_LIST))


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model computing in fp16 except the ops of ``OP_BLOCK_LIST``; inputs and outputs keep their types."""
    model = convert_float_to_float16(
        onnx.ModelProto.FromString(model.SerializeToString()),  # it converts in place
        keep_io_types=True,
        op_block_list=OP_BLOCK_LIST,
    )
    OnnxModel.graph_topological_sort(model.graph, is_deterministic=True)  # the converter appends its Cast nodes
    del model.graph.value_info[:]  # the converter's inferred shapes: ONNX Runtime infers them again on load
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # raises where a Cast is missing between types
    return model


def write_fp16_onnx(fp32_path: Path, fp16_path: Path) -> None:
    onnx.save(convert_to_fp16(onnx.load(str(fp32_path))), str(fp16_path))


def op_precisions(model: onnx.ModelProto) -> dict[str, int]:
    """How many compute nodes run in fp16 and in fp32 (a summary for reports and tests)."""
    g = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    counts = {"fp16": 0, "fp32": 0, "casts": 0}
    for node in model.graph.node:
        if node.op_type == "Cast":
            counts["casts"] += 1
            continue
        out = types.get(node.output[0]) if node.output else None
        if out == TensorProto.FLOAT16:
            counts["fp16"] += 1
        elif out == TensorProto.FLOAT:
            counts["fp32"] += 1
    return counts
