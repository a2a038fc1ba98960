"""Exported graphs joined into one ONNX graph, so that one served model does what an ensemble of two did.

``reconstruction_graph(encode, decode)``: IMAGE uint8 -> RECONSTRUCTION fp32, the encoder's nodes then the
decoder's, every internal name prefixed (``encode/``, ``decode/``) so the two cannot clash. Both graphs come from
the same export (one opset), and the joined graph runs the same kernels on the same values, so its output equals
decode(encode(x)) run as two sessions (checked at export, :func:`check_reconstruction`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import compose

from sae.core import wire

LINK = wire.LATENT  # the encoder's output and the decoder's input


def reconstruction_graph(encode: onnx.ModelProto, decode: onnx.ModelProto) -> onnx.ModelProto:
    if [o.name for o in encode.graph.output] != [LINK] or [i.name for i in decode.graph.input] != [LINK]:
        raise ValueError(f"the encoder must end in {LINK} and the decoder start from it")
    first = compose.add_prefix(encode, "encode/", rename_inputs=False)
    second = compose.add_prefix(decode, "decode/")
    joined = compose.merge_models(first, second, io_map=[(f"encode/{LINK}", f"decode/{LINK}")])
    (image_out,) = [o.name for o in joined.graph.output]
    for node in joined.graph.node:
        node.output[:] = [wire.RECONSTRUCTION if name == image_out else name for name in node.output]
    joined.graph.output[0].name = wire.RECONSTRUCTION
    onnx.checker.check_model(joined)
    return joined


def write_reconstruction_graph(encode_path: Path, decode_path: Path, out_path: Path) -> None:
    onnx.save(reconstruction_graph(onnx.load(str(encode_path)), onnx.load(str(decode_path))), str(out_path))


def check_reconstruction(encode_path: Path, decode_path: Path, joined_path: Path, images: np.ndarray) -> float:
    """Largest |joined(images) - decode(encode(images))|, each graph in its own ONNX Runtime session."""
    import onnxruntime as ort

    def session(path: Path):
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    latents = session(encode_path).run(None, {wire.IMAGE: images})[0]
    expected = session(decode_path).run(None, {LINK: latents})[0]
    got = session(joined_path).run(None, {wire.IMAGE: images})[0]
    return float(np.abs(got.astype(np.float64) - expected).max())
