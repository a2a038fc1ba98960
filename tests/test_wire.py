"""The wire contract (core/wire.py) against the generated configs, and the bank file (core/bank_file.py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as pb

from sae.core import wire
from sae.core.bank_file import BankFile, BankFileError
from sae.repository.configs import RepositoryOptions, ServedShapes, model_configs

SHAPES = (ServedShapes(64, 12, 4, bank_size=128, has_prior=True), ServedShapes(32, 10, 10, has_prior=False))
OPTIONS = (
    RepositoryOptions(),
    RepositoryOptions(name="m1", gpu_precision="fp32"),
    RepositoryOptions(name="nat", flavour="native"),
    RepositoryOptions(flavour="native", tensorrt=True),
    RepositoryOptions(name="lt", flavour="native", native_runtime="libtorch"),
)


def test_the_contract_names_are_the_readme_names():
    assert (wire.IMAGE, wire.IMAGE_U8, wire.LATENT, wire.RECONSTRUCTION) == (
        "IMAGE",
        "IMAGE_U8",
        "LATENT",
        "RECONSTRUCTION",
    )
    assert (wire.NUM_SAMPLES, wire.SEED, wire.DRAW, wire.PER_DIMENSION, wire.BASE, wire.MASK) == (
        "NUM_SAMPLES",
        "SEED",
        "DRAW",
        "PER_DIMENSION",
        "BASE",
        "MASK",
    )
    assert (wire.SOURCE_INDEX, wire.DRAW_MODE, wire.DIMENSION, wire.STEPS) == (
        "SOURCE_INDEX",
        "DRAW_MODE",
        "DIMENSION",
        "STEPS",
    )
    assert set(wire.ROLE_TENSORS) == set(wire.ROLES) and wire.DEFAULT_MAX_SAMPLES == 256
    assert wire.served_name("", "encode") == "encode" and wire.served_name("sae12", "encode") == "sae12_encode"
    assert wire.set_of("sae12_hybrid_sample") == "sae12" and wire.set_of("encode") == ""
    assert wire.set_of("sae12_decode") is None


@pytest.mark.parametrize("shapes", SHAPES, ids=["prior", "no-prior"])
@pytest.mark.parametrize("options", OPTIONS, ids=["python", "python-named", "native", "tensorrt", "libtorch"])
def test_every_generated_config_matches_the_contract_table(shapes, options):
    configs = model_configs(shapes, options)
    assert sorted(configs) == sorted(wire.served_name(options.name, role) for role in shapes.roles())
    for role in shapes.roles():
        config = configs[wire.served_name(options.name, role)]
        table = wire.ROLE_TENSORS[role]
        assert (config.max_batch_size > 0) == table.batched, role
        for kind, served, wanted in (("input", config.input, table.inputs), ("output", config.output, table.outputs)):
            rules = {t.name: t for t in wanted}
            for t in served:
                assert t.name in rules, f"{role}: {kind} {t.name} is not in the contract"
                rule = rules[t.name]
                assert pb.DataType.Name(t.data_type) == rule.dtype, f"{role}: {kind} {t.name}"
                assert list(t.dims) == wire.resolve_dims(
                    rule.dims, shapes.image_size, shapes.latent_dim, shapes.num_variables
                ), f"{role}: {kind} {t.name}"
                if kind == "input":
                    assert t.optional == rule.optional, f"{role}: input {t.name}"
            names = {t.name for t in served}
            required = {t.name for t in wanted if not t.optional}
            assert required <= names, f"{role}: {kind}s {sorted(required - names)} are missing"


def test_a_shape_rule_with_an_unknown_symbol_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown symbol 'Q'"):
        wire.resolve_dims(("N", "Q"), 64, 12, 4)
    with pytest.raises(ValueError, match="encode has no output 'IMAGE'"):
        wire.tensor("encode", "output", "IMAGE")


def test_float_images_are_the_training_pipelines_and_the_encoder_graphs_input():
    import torch

    from sae.export.graphs import EncodeGraph
    from sae.training.models.autoencoder import Autoencoder
    from sae.training.pipeline import to_model_input

    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    expected = wire.to_float_images(images)
    assert expected.dtype == np.float32 and expected.min() >= 0 and expected.max() <= 1
    torch_input = to_model_input(images, torch.device("cpu")).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(torch_input, expected)

    class Identity(torch.nn.Module):  # the model's preprocessing, then an encoder that returns its input
        preprocess = staticmethod(Autoencoder.preprocess)

        def encode(self, x):
            return x

    graph_input = EncodeGraph(Identity())(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(graph_input, expected)


# ---------------------------------------------------------------------------------------------- the bank file


def _bank(prior: bool = True) -> BankFile:
    rng = np.random.default_rng(1)
    dim = 12
    return BankFile(
        latents=rng.standard_normal((8, dim)).astype(np.float32),
        variable_of_dim=np.repeat(np.arange(4), 3).astype(np.int64),
        source_indices=np.arange(0, 16, 2, dtype=np.int64),
        seed=3,
        model_name="sae4-tiny",
        dim_min=-np.ones(dim, np.float32),
        dim_max=np.ones(dim, np.float32),
        data_sha256="ab" * 32,
        checkpoint_sha256="cd" * 32,
        checkpoint_step=7,
        num_train_images=100,
        prior_mean=np.zeros(dim, np.float32) if prior else None,
        prior_std=np.ones(dim, np.float32) if prior else None,
    )


def _write_as_the_exporter_did(bank: BankFile, path) -> None:
    """The layout ``export/bank.py`` wrote before BankFile: datasets, optional prior, then the attributes."""
    with h5py.File(path, "w") as f:
        for key in ("latents", "variable_of_dim", "source_indices", "dim_min", "dim_max"):
            f[key] = getattr(bank, key)
        if bank.prior_mean is not None:
            f["prior_mean"] = bank.prior_mean
            f["prior_std"] = bank.prior_std
        for key in ("seed", "model_name", "data_sha256", "checkpoint_sha256", "checkpoint_step", "num_train_images"):
            f.attrs[key] = getattr(bank, key)


@pytest.mark.parametrize("prior", [True, False])
def test_bank_file_round_trips_and_writes_the_same_bytes_as_before(tmp_path, prior):
    bank = _bank(prior)
    bank.write(tmp_path / "new.h5")
    _write_as_the_exporter_did(bank, tmp_path / "old.h5")
    assert (tmp_path / "new.h5").read_bytes() == (tmp_path / "old.h5").read_bytes()
    back = BankFile.read(tmp_path / "old.h5")
    for key in ("latents", "variable_of_dim", "source_indices", "dim_min", "dim_max"):
        assert (
            np.array_equal(getattr(back, key), getattr(bank, key))
            and getattr(back, key).dtype == getattr(bank, key).dtype
        )
    assert (back.seed, back.model_name, back.checkpoint_step, back.num_train_images) == (3, "sae4-tiny", 7, 100)
    assert (back.data_sha256, back.checkpoint_sha256) == ("ab" * 32, "cd" * 32)
    assert back.num_variables == 4 and back.latent_dim == 12
    assert (back.prior is not None) == prior


def test_export_bank_saves_through_bank_file(tmp_path):
    from sae.export.bank import Bank

    bank = _bank()
    Bank(**vars(bank)).save(tmp_path / "bank.h5")
    _write_as_the_exporter_did(bank, tmp_path / "old.h5")
    assert (tmp_path / "bank.h5").read_bytes() == (tmp_path / "old.h5").read_bytes()
    assert isinstance(Bank.load(tmp_path / "bank.h5"), Bank)


def test_bank_file_names_the_file_and_the_fault(tmp_path):
    path = tmp_path / "bank.h5"
    _bank().write(path)
    with h5py.File(path, "a") as f:
        del f["prior_std"]
        f["prior_std"] = np.ones(5, np.float32)  # a prior of the wrong size
    with pytest.raises(BankFileError, match=r"bank.h5: prior_std must be float \[12\].*declares float32 \[5\]"):
        BankFile.read(path)

    _bank().write(path)
    with h5py.File(path, "a") as f:
        del f.attrs["checkpoint_step"]
    with pytest.raises(BankFileError, match=r"bank.h5 lacks the attributes \['checkpoint_step'\]"):
        BankFile.read(path)

    path.write_bytes(b"\x89HDF\r\n\x1a\n not a bank")
    with pytest.raises(BankFileError, match="bank.h5 is not a readable bank file"):
        BankFile.read(path)


def test_the_evaluation_figures_read_the_bank_through_bank_file(tmp_path):
    from sae.evaluation.figures import read_bank

    path = tmp_path / "bank.h5"
    _bank().write(path)
    assert np.array_equal(read_bank(path).dim_max, np.ones(12, np.float32))
    path.write_bytes(b"nothing")
    with pytest.raises(ValueError, match=r"--bank .*bank.h5 is not a readable bank file"):
        read_bank(path)


# ---------------------------------------------------------------------------------------------- shared helpers


class _FakeTensor:
    def __init__(self, array):
        self.array = array

    def as_numpy(self):
        return self.array


class _FakePb:
    """What gather_inputs uses of triton_python_backend_utils: inputs by name."""

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return None if name not in request else _FakeTensor(request[name])


def test_gather_inputs_refuses_each_bad_request_alone():
    from sae.repository.templates.onnx_model import gather_inputs

    good = np.zeros((2, 12), np.float32)
    requests = [
        {"LATENT": good},
        {},
        {"LATENT": np.full((1, 12), np.nan, np.float32)},
        {"LATENT": np.zeros((1, 5), np.float32)},
        {"LATENT": good[:1]},
    ]
    responses, indices, arrays = gather_inputs(_FakePb, requests, "LATENT", [12], lambda why: f"refused: {why}")
    assert indices == [0, 4] and [a.shape for a in arrays] == [(2, 12), (1, 12)]
    assert responses[0] is None and responses[4] is None
    assert responses[1] == "refused: input LATENT is required"
    assert "finite" in responses[2] and "shape [N, 12]" in responses[3]


def test_config_pbtxt_is_parsed_by_one_function(tmp_path):
    from sae.core.model_config import config_dict
    from sae.repository.pbtxt import config_text
    from sae.repository.validate import read_config
    from sae.serving.bench.inprocess import read_config as bench_config

    config = model_configs(SHAPES[0], RepositoryOptions(name="m"))["m_sampler"]
    (tmp_path / "m_sampler").mkdir()
    path = tmp_path / "m_sampler" / "config.pbtxt"
    path.write_text(config_text(config, "sampler", "test"))
    assert read_config(path) == config
    assert bench_config(tmp_path, "m_sampler") == config_dict(config)
    assert bench_config(tmp_path, "m_sampler")["input"][0]["name"] == "NUM_SAMPLES"
