"""The counter-based hybrid draw of ``core/draw.py`` as ONNX nodes, and the native ``NAME_hybrid_sample`` graph.

``draw_model(bank, variable_of_dim, mode)`` builds a graph NUM_SAMPLES int64 [1], SEED int64 [1] -> LATENT fp32
[n, D], SOURCE_INDEX int64 [n, G] whose integer arithmetic is that of :mod:`sae.core.draw` node for node: splitmix64
on ``uint64`` tensors (Add, Mul, BitShift, BitwiseXor; opset 18, where the bitwise ops start) and the exact 64-bit
multiply-high reduction from the hash's 32-bit halves (BitwiseAnd, Mul, Add, BitShift). ONNX Runtime's CPU kernels
compute all of these on ``uint64`` (tests/test_draw.py compares the two draws bit for bit), so no int64 emulation is
needed. ``distinct`` is the partial Fisher-Yates shuffle unrolled over the G groups (GatherElements and two
ScatterElements per step). The bank is an initializer.

``hybrid_sample_model(decoder, bank, variable_of_dim, image_size, mode)`` joins that draw to the exported decoder graph
(converted from opset 17 to 18) and adds IMAGE_U8 and the constant DRAW_MODE, so the stock Triton container serves
hybrid sampling on the ``onnxruntime_onnx`` platform with no python step. It cannot refuse a request (a graph has
no error branch): NUM_SAMPLES and SEED are checked by the client, and BASE/MASK (controllable generation) are left
to the python flavour.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, version_converter

from sae.core import wire
from sae.core.draw import (
    DISTINCT,
    DRAW_MODES,
    GOLDEN_GAMMA,
    INDEPENDENT,
    LOW_32,
    MAX_STORED,
    MIX_MULTIPLIERS,
    MIX_SHIFTS,
    PER_DIMENSION,
)

DRAW_OPSET = 18  # BitwiseXor / BitwiseAnd


class _Builder:
    """Nodes and initializers of one graph, with names under a prefix so they cannot clash with the decoder's."""

    def __init__(self, prefix: str = "draw/"):
        self.prefix, self._count = prefix, 0
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def const(self, value, dtype, hint: str = "c") -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    def u64(self, value: int) -> str:
        return self.const(value, np.uint64, "u64")

    def shift_right(self, x: str, bits: int) -> str:
        return self.op("BitShift", x, self.u64(bits), direction="RIGHT")

    def mix(self, x: str) -> str:
        """sae.core.draw.mix: splitmix64's state step and finaliser."""
        z = self.op("Add", x, self.u64(GOLDEN_GAMMA))
        for shift, multiplier in zip(MIX_SHIFTS, MIX_MULTIPLIERS):
            z = self.op("Mul", self.op("BitwiseXor", z, self.shift_right(z, shift)), self.u64(multiplier))
        return self.op("BitwiseXor", z, self.shift_right(z, MIX_SHIFTS[-1]))

    def bounded(self, h: str, n: int) -> str:
        """sae.core.draw.bounded: floor(h * n / 2^64) as int64."""
        if not 1 <= n < MAX_STORED:
            raise ValueError(f"the range of an index must be in 1..2^32-1, got {n}")
        hi, lo = self.shift_right(h, 32), self.op("BitwiseAnd", h, self.u64(LOW_32))
        n_const = self.u64(n)
        high = self.op("Add", self.op("Mul", hi, n_const), self.shift_right(self.op("Mul", lo, n_const), 32))
        return self.op("Cast", self.shift_right(high, 32), to=TensorProto.INT64)


def _draw_nodes(b: _Builder, bank: np.ndarray, variable_of_dim: np.ndarray, mode: str) -> None:
    """NUM_SAMPLES, SEED -> SOURCE_INDEX, LATENT (the graph-level names)."""
    if mode not in DRAW_MODES:
        raise ValueError(f"draw mode must be one of {', '.join(DRAW_MODES)}, got {mode!r}")
    num_stored, dim = bank.shape
    group_of_dim = np.arange(dim) if mode == PER_DIMENSION else np.asarray(variable_of_dim, np.int64)
    num_groups = int(group_of_dim.max()) + 1
    if mode == DISTINCT and num_groups > num_stored:
        raise ValueError(
            f"the distinct draw needs at least as many stored latents as variables ({num_groups}); "
            f"the bank has {num_stored}"
        )
    count = b.op("Squeeze", wire.NUM_SAMPLES, b.const([0], np.int64))
    samples = b.op("Range", b.const(0, np.int64), count, b.const(1, np.int64))  # [n]
    samples = b.op("Unsqueeze", b.op("Cast", samples, to=TensorProto.UINT64), b.const([1], np.int64))  # [n, 1]
    seed_hash = b.mix(b.op("Cast", wire.SEED, to=TensorProto.UINT64))  # [1]
    sample_hash = b.mix(b.op("Add", seed_hash, samples))  # [n, 1]
    hashes = b.mix(
        b.op("Add", sample_hash, b.u64(0) if num_groups == 1 else b.const(np.arange(num_groups)[None, :], np.uint64))
    )  # [n, G]
    if mode != DISTINCT:
        source = b.op("Identity", b.bounded(hashes, num_stored), out=wire.SOURCE_INDEX)
    else:
        shape = b.op("Shape", hashes)
        rows_by_stored = b.op(
            "Concat",
            b.op("Slice", shape, b.const([0], np.int64), b.const([1], np.int64)),
            b.const([num_stored], np.int64),
            axis=0,
        )
        rows_by_one = b.op(
            "Concat",
            b.op("Slice", shape, b.const([0], np.int64), b.const([1], np.int64)),
            b.const([1], np.int64),
            axis=0,
        )
        order = b.op("Expand", b.const(np.arange(num_stored)[None, :], np.int64), rows_by_stored)  # [n, N]
        for g in range(num_groups):
            column = b.op("Slice", hashes, b.const([g], np.int64), b.const([g + 1], np.int64), b.const([1], np.int64))
            other = b.op("Add", b.bounded(column, num_stored - g), b.const(g, np.int64))  # [n, 1]
            here = b.op("Expand", b.const([[g]], np.int64), rows_by_one)
            at_here = b.op("GatherElements", order, here, axis=1)
            at_other = b.op("GatherElements", order, other, axis=1)
            order = b.op("ScatterElements", order, other, at_here, axis=1)
            order = b.op("ScatterElements", order, here, at_other, axis=1)
        source = b.op(
            "Slice",
            order,
            b.const([0], np.int64),
            b.const([num_groups], np.int64),
            b.const([1], np.int64),
            out=wire.SOURCE_INDEX,
        )
    row_of_dim = b.op("Gather", source, b.const(group_of_dim, np.int64), axis=1)  # [n, D]
    flat = b.op("Add", b.op("Mul", row_of_dim, b.const(dim, np.int64)), b.const(np.arange(dim), np.int64))
    b.op("Gather", b.const(np.asarray(bank, np.float32).reshape(-1), np.float32, "bank"), flat, axis=0, out=wire.LATENT)


def _io(name: str, dtype: int, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _request_inputs() -> list[onnx.ValueInfoProto]:
    return [_io(wire.NUM_SAMPLES, TensorProto.INT64, [1]), _io(wire.SEED, TensorProto.INT64, [1])]


def draw_model(bank: np.ndarray, variable_of_dim: np.ndarray, mode: str = INDEPENDENT) -> onnx.ModelProto:
    """NUM_SAMPLES, SEED -> LATENT [n, D], SOURCE_INDEX [n, G]: the draw alone."""
    b = _Builder()
    _draw_nodes(b, bank, variable_of_dim, mode)
    graph = helper.make_graph(
        b.nodes,
        "hybrid_draw",
        _request_inputs(),
        [
            _io(wire.LATENT, TensorProto.FLOAT, ["n", bank.shape[1]]),
            _io(wire.SOURCE_INDEX, TensorProto.INT64, ["n", "groups"]),
        ],
        b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", DRAW_OPSET)])
    onnx.checker.check_model(model)
    return model


def hybrid_sample_model(
    decoder: onnx.ModelProto, bank: np.ndarray, variable_of_dim: np.ndarray, image_size: int, mode: str = INDEPENDENT
) -> onnx.ModelProto:
    """The draw, the decoder (its input LATENT, its output IMAGE), IMAGE_U8 and DRAW_MODE in one graph."""
    decoder = version_converter.convert_version(decoder, DRAW_OPSET)
    if [i.name for i in decoder.graph.input] != [wire.LATENT] or [o.name for o in decoder.graph.output] != [wire.IMAGE]:
        raise ValueError("the decoder graph must map LATENT to IMAGE")
    b = _Builder()
    _draw_nodes(b, bank, variable_of_dim, mode)
    num_draw_nodes = len(b.nodes)
    clipped = b.op("Clip", wire.IMAGE, b.const(0, np.float32), b.const(1, np.float32))
    rounded = b.op("Round", b.op("Mul", clipped, b.const(wire.UINT8_SCALE, np.float32)))
    b.op("Cast", rounded, to=TensorProto.UINT8, out=wire.IMAGE_U8)
    # make_tensor takes bytes for a STRING tensor (onnx's code); its annotation lists only numbers.
    mode_tensor = helper.make_tensor("mode", TensorProto.STRING, [1], [mode.encode()])  # type: ignore[list-item]
    b.nodes.append(helper.make_node("Constant", [], [wire.DRAW_MODE], name="draw/mode", value=mode_tensor))
    image = ["n", image_size, image_size, 3]
    nodes = b.nodes[:num_draw_nodes] + list(decoder.graph.node) + b.nodes[num_draw_nodes:]
    outputs = [
        _io(wire.IMAGE, TensorProto.FLOAT, image),
        _io(wire.IMAGE_U8, TensorProto.UINT8, image),
        _io(wire.LATENT, TensorProto.FLOAT, ["n", bank.shape[1]]),
        _io(wire.SOURCE_INDEX, TensorProto.INT64, ["n", "groups"]),
        _io(wire.DRAW_MODE, TensorProto.STRING, [1]),
    ]
    graph = helper.make_graph(
        nodes, "hybrid_sample", _request_inputs(), outputs, b.initializers + list(decoder.graph.initializer)
    )
    model = helper.make_model(graph, opset_imports=list(decoder.opset_import), ir_version=decoder.ir_version)
    onnx.checker.check_model(model)
    return model
