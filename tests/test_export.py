import h5py
import numpy as np
import onnx
import pytest

from export.bank import Bank
from export.repository import ONNX_TOLERANCE, ExportError, export_run
from training.checkpoint import Checkpoint


def test_onnx_graphs_have_a_dynamic_batch_axis_and_match_eager(exported_repo, trained_run):
    for name, io in (("encode", ("IMAGE", "LATENT")), ("decode", ("LATENT", "IMAGE"))):
        graph = onnx.load(exported_repo / name / "1" / "model.onnx").graph
        assert [graph.input[0].name, graph.output[0].name] == list(io)
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_reports_onnx_parity_within_tolerance(tmp_path, trained_run):
    from conftest import copy_repository

    report = export_run(trained_run, copy_repository(tmp_path / "repo"))
    assert set(report.max_abs_diff) == {"encode", "decode"}
    assert all(0 <= d <= ONNX_TOLERANCE for d in report.max_abs_diff.values()), report.max_abs_diff


def test_bank_holds_128_training_latents_and_the_variable_partition(exported_repo, trained_run, shapes_file):
    from clients.datasets import split_indices

    bank = Bank.load(exported_repo / "sampler" / "1" / "bank.h5")
    assert bank.latents.shape == (128, 12) and bank.latents.dtype == np.float32
    assert np.array_equal(bank.variable_of_dim, np.arange(12))  # SAE-12: one dimension per variable
    with h5py.File(shapes_file) as f:
        n = len(f["images"])
    assert set(bank.source_indices) <= set(split_indices(n)["train"])
    assert len(np.unique(bank.source_indices)) == 128


def test_export_refuses_a_model_that_does_not_fit_the_served_shapes(tmp_path, trained_run):
    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    config = repo / "decode" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [ 12 ]", "dims: [ 10 ]"))
    with pytest.raises(ExportError, match="decode.*LATENT"):
        export_run(trained_run, repo)
    assert not (repo / "encode" / "1" / "model.onnx").exists(), "nothing is written when export fails"


def test_export_of_a_corrupt_checkpoint_fails_cleanly(tmp_path):
    bad = tmp_path / "run" / "checkpoints" / "last.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        export_run(tmp_path / "run", tmp_path / "repo")
    assert Checkpoint  # the error type is a ValueError subclass: CheckpointError
