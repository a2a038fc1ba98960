"""The Python API (sae/api.py): train -> export -> serve -> SAEClient, and load_model, on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, copy_repository


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, shapes_file):
    from sae import train

    run = tmp_path_factory.mktemp("api") / "run"
    result = train(
        "sae12-tiny",
        shapes_file,
        run,
        steps=3,
        device="cpu",
        progress=False,
        train__batch_size=16,
        train__lr=1e-3,
        model__strtfm_hidden=(32, 64),
    )
    return run, result


def test_train_runs_the_steps_with_the_overrides(api_run):
    run, result = api_run
    assert result.step == 3 and result.run_dir == run
    written = json.loads((run / "config.json").read_text())
    assert written["train"]["batch_size"] == 16 and written["train"]["lr"] == 1e-3
    assert written["model"]["strtfm_hidden"] == [32, 64]
    assert (run / "checkpoints" / "last.pt").is_file()


def test_train_refuses_a_bad_override_by_name(tmp_path, shapes_file):
    from sae import train
    from sae.training.overrides import OverrideError

    with pytest.raises(OverrideError, match="train.lrr: TrainConfig has no field 'lrr'; did you mean lr"):
        train("sae12-tiny", shapes_file, tmp_path / "run", steps=1, train__lrr=1e-3)
    with pytest.raises(OverrideError, match="train.steps: expected int, got str '5'"):
        train("sae12-tiny", shapes_file, tmp_path / "run", steps=1, train__steps="5")
    assert not (tmp_path / "run").exists()


def test_load_model_gives_the_trained_eager_model_in_eval_mode(api_run):
    import torch

    from sae import load_model
    from sae.training.checkpoint import Checkpoint

    run, _ = api_run
    model = load_model(run)
    assert not model.training and all(not m.training for m in model.modules())
    state = Checkpoint.load(run).model_state
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    same = load_model(run / "checkpoints" / "last.pt")
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert model.encode(images).shape == (2, 12)
        assert torch.equal(model.encode(images), same.encode(images))


def test_load_model_names_a_missing_checkpoint(tmp_path):
    from sae import load_model
    from sae.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=f"no checkpoint at {tmp_path}"):
        load_model(tmp_path)


@pytest.mark.server
def test_export_then_serve_then_sample_through_the_client(api_run, tmp_path):
    from sae import SAEClient, export
    from sae.repository.validate import validate_repository
    from sae.serving.triton import ServerConfig, TritonServer

    run, _ = api_run
    repo = copy_repository(tmp_path / "model_repository")
    report = export(run, repo, name="api", bank_size=16)
    assert set(report.models) >= {"api_encode", "api_decode", "api_hybrid_sample"}
    assert not [p for p in validate_repository(repo) if p.severity == "error"]
    with TritonServer(ServerConfig(repository=repo), log_path=tmp_path / "server.log") as server:
        with SAEClient(server.grpc_url, model="api") as client:
            client.wait_ready(timeout_s=30)
            samples = client.sample(4, seed=0)
    assert samples.images.shape == (4, 64, 64, 3) and np.isfinite(samples.images).all()
    assert samples.source_index.max() < 16  # drawn from the bank of 16 latents


def test_importing_the_api_loads_neither_torch_nor_tritonclient():
    code = (
        "import sys, sae.cli; from sae import serving; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'tritonclient.grpc' not in sys.modules, 'tritonclient'; from sae import SAEClient; "
        "from sae.clients.triton_client import SAEClient as C; assert SAEClient is C; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_from_sae_import_export_calls_the_api_after_the_export_package_is_imported(monkeypatch):
    """Importing any module of ``sae.export`` binds the name ``sae.export`` to the package: it is callable too, and
    makes the API's call."""
    import sae.api
    import sae.export.model_set

    calls = []
    monkeypatch.setattr(sae.export.model_set, "export_run", lambda *args, **kwargs: calls.append((args, kwargs)))
    from sae import export

    assert isinstance(export, type(sae)) and callable(export)  # the package, bound by the import above
    export("run", "repo", name="x", bank_size=16)
    sae.api.export("run", "repo", name="x", bank_size=16)
    assert calls == [((Path("run"), Path("repo")), {"name": "x", "bank_size": 16})] * 2
