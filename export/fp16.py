"""fp32 -> fp16 conversion of an ONNX graph with the ``onnx`` package alone (no onnxconverter-common).

What ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True, op_block_list=...)`` does, for the
ops our graphs use: the graph's inputs and outputs keep their types (Cast nodes at the edges), normalisation and
``exp``-based ops stay in fp32 (``FP32_OPS``: their reductions and overflow-prone ranges need it), every other float
computation, initializer and constant becomes fp16, and Cast nodes join the two wherever a tensor crosses between
them. Tensors that must stay fp32 by the ONNX spec (Resize's roi/scales) are left alone.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sae.clients.errors import SAEError

FP32_OPS = frozenset({
    "InstanceNormalization", "BatchNormalization", "LayerNormalization", "GroupNormalization",  # normalisation
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceLogSumExp",
    "Exp", "Softplus", "Log", "Pow", "Sqrt", "Softmax", "LogSoftmax",  # exp / large dynamic range
})
TYPE_AGNOSTIC_OPS = frozenset({"Shape", "Size"})  # read any float type, emit int64
DATA_INPUTS = {"Resize": (0,), "Upsample": (0,)}  # ops whose other float inputs are spec-bound to fp32
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


class Fp16ConversionError(SAEError, RuntimeError):
    pass


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.input, *g.output]}
    types.update({init.name: init.data_type for init in g.initializer})
    return types


def _is_data_input(op_type: str, index: int) -> bool:
    return index in DATA_INPUTS.get(op_type, (index,))


def _node_in_fp16(node: onnx.NodeProto) -> bool:
    return node.op_type not in FP32_OPS and node.op_type not in TYPE_AGNOSTIC_OPS


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model computing in fp16 except ``FP32_OPS``; inputs and outputs keep their types."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    types = _elem_types(model)
    nodes = list(graph.node)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in nodes:
        for i, name in enumerate(node.input):
            consumers[name].append((node, i))

    def wants_fp16(name: str) -> bool:
        """Constants and initializers become fp16 when every use of them is an fp16 data input."""
        uses = consumers.get(name, [])
        return bool(uses) and all(_node_in_fp16(n) and _is_data_input(n.op_type, i) for n, i in uses)

    actual: dict[str, int] = {vi.name: vi.type.tensor_type.elem_type for vi in graph.input}
    for init in graph.initializer:
        if init.data_type == FLOAT and wants_fp16(init.name):
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
        actual[init.name] = init.data_type

    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[onnx.NodeProto] = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__as_{'fp16' if to == HALF else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"{casts[key]}__cast"))
        return casts[key]

    for node in nodes:
        fp16 = _node_in_fp16(node)
        if node.op_type in ("Constant", "ConstantOfShape"):
            fp16 = all(wants_fp16(o) for o in node.output)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT and fp16:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16),
                                                            attr.t.name))
        for i, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            if node.op_type in TYPE_AGNOSTIC_OPS or (node.op_type == "Cast" and i == 0):
                continue
            want = HALF if fp16 and _is_data_input(node.op_type, i) else FLOAT
            have = actual.get(name, FLOAT)
            if have != want:
                node.input[i] = cast(name, want)
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == FLOAT and fp16:
                to.i = HALF
        for name in node.output:
            original = types.get(name)
            if original is None:
                raise Fp16ConversionError(f"no inferred type for tensor {name!r} (node {node.name or node.op_type})")
            actual[name] = HALF if original == FLOAT and fp16 and node.op_type not in TYPE_AGNOSTIC_OPS else original
        new_nodes.append(node)

    for out in graph.output:  # keep_io_types: the graph's outputs stay as they were
        if actual.get(out.name) == HALF:
            inner = f"{out.name}__fp16"
            for node in new_nodes:
                node.output[:] = [inner if o == out.name else o for o in node.output]
                node.input[:] = [inner if o == out.name else o for o in node.input]
            new_nodes.append(helper.make_node("Cast", [inner], [out.name], to=FLOAT, name=f"{out.name}__cast_out"))

    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # raises if any Cast is missing
    return model


def write_fp16_onnx(fp32_path: Path, fp16_path: Path) -> None:
    onnx.save(convert_to_fp16(onnx.load(str(fp32_path))), str(fp16_path))


def op_precisions(model: onnx.ModelProto) -> dict[str, int]:
    """How many compute nodes run in fp16 and in fp32 (a summary for reports and tests)."""
    types = _elem_types(model)
    counts = {"fp16": 0, "fp32": 0, "casts": 0}
    for node in model.graph.node:
        if node.op_type == "Cast":
            counts["casts"] += 1
            continue
        out = types.get(node.output[0]) if node.output else None
        if out == HALF:
            counts["fp16"] += 1
        elif out == FLOAT:
            counts["fp32"] += 1
    return counts
