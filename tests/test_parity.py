"""Eager vs TorchScript vs ONNX Runtime (fp32 and fp16) at batch sizes 1, 7 and 256, within export.parity's
tolerances. fp16 runs on ONNX Runtime's CPU provider here (it has fp16 kernels for every op of these graphs)."""

import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from sae.export.fp16 import FP32_OPS, op_precisions, write_fp16_onnx
from sae.export.graphs import export_onnx, graph_specs
from sae.export.parity import TOLERANCES, compare
from sae.export.torchscript import export_torchscript, load_torchscript
from sae.training.checkpoint import Checkpoint
from sae.training.models.zoo import build_model

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 7, 256)


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    ckpt = Checkpoint.load(trained_run)
    model = build_model(ckpt.config.model)
    model.load_state_dict(ckpt.model_state)
    model.eval()
    folder = tmp_path_factory.mktemp("parity")
    out = {}
    for graph, spec in graph_specs(model).items():
        files = {
            "onnx": folder / f"{graph}.onnx",
            "onnx_fp16": folder / f"{graph}_fp16.onnx",
            "torchscript": folder / f"{graph}.pt",
        }
        export_onnx(spec, files["onnx"])
        write_fp16_onnx(files["onnx"], files["onnx_fp16"])
        export_torchscript(spec, files["torchscript"])
        out[graph] = (spec, files)
    return out


@pytest.fixture(scope="module")
def results(exported):
    """Every runtime against eager, eager computed once per input (decode at batch 256 takes seconds)."""
    return {graph: compare(graph, spec, files, BATCH_SIZES) for graph, (spec, files) in exported.items()}


@pytest.mark.parametrize("graph", ["encode", "decode"])
@pytest.mark.parametrize("runtime", ["torchscript", "onnx", "onnx_fp16"])
def test_runtime_matches_eager_at_batch_1_7_256(results, graph, runtime):
    mine = [r for r in results[graph] if r.runtime == runtime]
    assert [r.batch_size for r in mine] == list(BATCH_SIZES)
    for r in mine:
        print(r)
        assert r.ok, str(r)
    if runtime != "onnx_fp16":  # fp32 runtimes are far inside their bound; fp16 only inside its own
        assert max(r.max_abs_diff for r in mine) < TOLERANCES["onnx_fp16"].atol / 100


def test_fp16_graph_keeps_io_types_and_runs_normalisation_and_exp_in_fp32(exported):
    for _graph, (_, files) in exported.items():
        fp32, fp16 = onnx.load(files["onnx"]), onnx.load(files["onnx_fp16"])
        io = lambda m: [(v.name, v.type.tensor_type.elem_type) for v in [*m.graph.input, *m.graph.output]]  # noqa: E731
        assert io(fp16) == io(fp32)
        halves = [i for i in fp16.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
        assert len(halves) > len(fp16.graph.initializer) // 2, "most weights are stored in fp16"
        counts = op_precisions(fp16)
        assert counts["fp16"] > counts["fp32"] > 0
        inferred = onnx.shape_inference.infer_shapes(fp16).graph
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.value_info}
        kept = [n for n in fp16.graph.node if n.op_type in FP32_OPS]
        assert kept and all(types[n.output[0]] == onnx.TensorProto.FLOAT for n in kept)
        assert files["onnx_fp16"].stat().st_size < 0.8 * files["onnx"].stat().st_size


def test_torchscript_records_the_pinned_torch_version(exported):
    import torch

    pinned = re.search(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    for _, files in exported.values():
        _, made_with = load_torchscript(files["torchscript"])
        assert made_with == torch.__version__
        assert made_with.split("+")[0] == pinned, "TorchScript files are made and tested with the pinned torch"


def test_graphs_take_any_batch_size_without_retracing(exported):
    import onnxruntime as ort

    _, files = exported["decode"]
    session = ort.InferenceSession(str(files["onnx"]), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        out = session.run(None, {"LATENT": np.zeros((b, 12), np.float32)})[0]
        assert out.shape == (b, 64, 64, 3)
