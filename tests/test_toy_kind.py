"""A model kind added in one file (``tests/helpers/toy_kind.py``), registered at test time, with nothing else edited:
its config round-trips, it trains, exports and is served by a real Triton server, hybrid samples drawing its chunks
and prior samples from its prior; then it is gone from the registry again."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys

import numpy as np
import pytest
from conftest import copy_repository

from sae.training.config import TINY_BACKBONE, TINY_TRAIN, ExperimentConfig
from sae.training.model_config import ModelConfig
from sae.training.models.registry import find_kind, model_kinds

STEPS = 12
VARIABLES = 4  # of 3 dimensions each


@pytest.fixture(scope="module")
def toy():
    """The toy kind's module, imported (so registered) for this module's tests only."""
    assert find_kind("toyvsae") is None, "registered only while these tests run"
    module = importlib.import_module("helpers.toy_kind")
    yield module
    from sae.training.models.registry import unregister_model

    unregister_model(module.KIND)
    sys.modules.pop("helpers.toy_kind", None)


@pytest.fixture(scope="module")
def toy_config(toy) -> ExperimentConfig:
    model = ModelConfig(toy.KIND, 12, VARIABLES, (32, 64), TINY_BACKBONE)
    train = dataclasses.replace(TINY_TRAIN, batch_size=16, steps=STEPS, log_every=STEPS, checkpoint_every=STEPS)
    return ExperimentConfig("toyvsae-tiny", model, train).validate()


def test_the_kind_is_registered_with_its_capabilities_and_settings(toy, toy_config):
    kind = find_kind(toy.KIND)
    assert toy.KIND in model_kinds() and kind.model_class is toy.ToyVariationalSAE
    assert kind.has_prior and kind.variational and kind.chunked_latent and not kind.reads_ladder
    assert toy_config.model.regulariser == toy.ToyConfig(kl_weight=0.5), "the kind's defaults fill the config"
    assert toy_config.model.variable_sizes == (3,) * VARIABLES
    assert ExperimentConfig.from_dict(json.loads(toy_config.to_json())) == toy_config
    from sae.training.models.zoo.vae import VariationalConfig

    with pytest.raises(ValueError, match="ModelConfig.regulariser: kind 'toyvsae' takes ToyConfig, got Variational"):
        dataclasses.replace(toy_config.model, regulariser=VariationalConfig()).validate()


def test_registering_the_same_name_twice_is_refused(toy):
    from sae.training.models.registry import register_model

    with pytest.raises(ValueError, match="'toyvsae' is registered already"):
        register_model(toy.KIND)(toy.ToyVariationalSAE)


@pytest.fixture(scope="module")
def toy_run(toy_config, shapes_file, tmp_path_factory):
    from sae.training.trainer import Trainer

    run = tmp_path_factory.mktemp("toy") / "run"
    trainer = Trainer(toy_config, shapes_file, run, device="cpu")
    try:
        result = trainer.fit(progress=False)
    finally:
        trainer.close()
    return run, result


def test_the_toy_kind_trains_with_its_own_regulariser(toy_run):
    from sae.training.metrics_log import read_metrics

    run, result = toy_run
    assert result.step == STEPS and np.isfinite(result.last_loss)
    rows = [r for r in read_metrics(run) if r["split"] == "train"]
    assert rows and all(r["loss"] == pytest.approx(r["reconstruction"] + 0.5 * r["kl"], rel=1e-4) for r in rows)


@pytest.fixture(scope="module")
def toy_server(toy_run, tmp_path_factory):
    from sae.export.model_set import export_run
    from sae.serving.triton import ServerConfig, TritonServer

    repo = copy_repository(tmp_path_factory.mktemp("toy-export") / "model_repository")
    report = export_run(toy_run[0], repo, name="toy")  # checked by the repository's validator before install
    log = tmp_path_factory.mktemp("toy-server") / "server.log"
    with TritonServer(ServerConfig(repository=repo), log_path=log) as server:
        yield server, report


@pytest.mark.server
def test_the_toy_kind_is_exported_and_served(toy_server, shapes_file):
    from sae.clients.triton_client import SAEClient
    from sae.core.datasets import H5Images, split_indices

    server, report = toy_server
    assert {"toy_encode", "toy_decode", "toy_hybrid_sample", "toy_prior_sample"} <= set(report.models)
    data = H5Images(shapes_file)
    images = data.read(split_indices(len(data))["test"][:3])
    with SAEClient(server.grpc_url, model="toy") as client:
        assert client.has_prior()
        latents = client.encode(images)
        samples = client.sample(5, seed=0)
        prior = client.prior_sample(4, seed=1)
    assert latents.shape == (3, 12) and np.isfinite(latents).all()
    assert samples.images.shape == (5, 64, 64, 3) and samples.source_index.shape == (5, VARIABLES), (
        "one stored latent per variable: the kind's chunks are the draw groups"
    )
    assert prior.images.shape == (4, 64, 64, 3) and prior.latents.shape == (4, 12)
    assert 0.0 <= samples.images.min() and samples.images.max() <= 1.0
