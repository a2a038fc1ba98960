"""The one-hop models as exported: configs of both flavours, the native hybrid graph, the joined reconstruction
graph, and what the validator says about them."""

import shutil

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb

from sae.clients.model_info import ModelInfo
from sae.clients.request_plans import plan_sample
from sae.core.draw import source_index, to_uint8
from sae.core.errors import InvalidInputError
from sae.export.bank import Bank
from sae.export.composed import check_reconstruction
from sae.repository.configs import RepositoryOptions, ServedShapes, ServingSettings, model_configs
from sae.repository.validate import read_config, validate_repository

SHAPES = ServedShapes(64, 12, 4, bank_size=128, has_prior=True)


def _configs(**options):
    return {
        role: config
        for role, config in zip(SHAPES.roles(), model_configs(SHAPES, RepositoryOptions(**options)).values())
    }


def _info(config) -> ModelInfo:
    return ModelInfo.from_config(json_format.MessageToDict(config, preserving_proto_field_name=True))


def test_python_flavour_samples_and_reconstructs_in_one_model():
    configs = _configs(name="m")
    for role in ("hybrid_sample", "prior_sample", "reconstruct"):
        assert configs[role].platform != "ensemble" and configs[role].backend == "python", role
    assert configs["reconstruct"].parameters["onnx_file"].string_value == "model.onnx"
    for role in ("hybrid_sample", "prior_sample"):  # they decode through the batched decode model (BLS)
        assert configs[role].parameters["decode_model"].string_value == "m_decode", role
        assert "onnx_file" not in configs[role].parameters, role
        assert configs[role].max_batch_size == 0 and configs[role].instance_group[0].count > 2, role
    in_process = _configs(name="m", serving=ServingSettings(sample_decoding="in_process", hybrid_sample_instances=2))
    assert in_process["hybrid_sample"].parameters["onnx_file"].string_value == "model.onnx"
    assert "decode_model" not in in_process["hybrid_sample"].parameters
    hybrid = configs["hybrid_sample"]
    outputs = {t.name: t for t in hybrid.output}
    assert list(outputs) == ["IMAGE", "IMAGE_U8", "LATENT", "SOURCE_INDEX", "DRAW_MODE"]
    assert outputs["IMAGE_U8"].data_type == pb.DataType.Value("TYPE_UINT8") and list(outputs["IMAGE_U8"].dims) == list(
        outputs["IMAGE"].dims
    ) == [-1, 64, 64, 3]
    assert [t.name for t in hybrid.input] == [t.name for t in configs["sampler"].input]
    params = {k: v.string_value for k, v in hybrid.parameters.items()}
    assert params["draw_modes"] == "independent,distinct,per_dimension" and params["latents_from"] == "bank"
    assert params["max_samples"] == "256" and params["bank_size"] == "128"
    assert configs["prior_sample"].parameters["latents_from"].string_value == "prior"


def test_native_flavour_serves_hybrid_sampling_as_one_onnx_graph():
    configs = _configs(name="m", flavour="native")
    hybrid = configs["hybrid_sample"]
    assert hybrid.platform == "onnxruntime_onnx" and hybrid.default_model_filename == "model_hybrid_fp16.onnx"
    assert [t.name for t in hybrid.input] == ["NUM_SAMPLES", "SEED"]
    assert hybrid.parameters["draw_modes"].string_value == "independent"
    assert configs["reconstruct"].platform == "onnxruntime_onnx"
    assert configs["prior_sample"].platform == "ensemble", "a normal draw has no reproducible ONNX op"
    assert (
        _configs(name="m", flavour="native", gpu_precision="fp32")["hybrid_sample"].default_model_filename
        == "model_hybrid.onnx"
    )
    libtorch = _configs(name="m", flavour="native", native_runtime="libtorch")
    assert libtorch["reconstruct"].platform == "ensemble", "no joined TorchScript file: encode -> decode"


def test_a_client_asking_the_native_model_for_another_mode_gets_an_error_naming_draw():
    info = _info(_configs(name="m", flavour="native")["hybrid_sample"])
    assert len(plan_sample(info, 256, 4, 0)) == 1
    for draw in ("distinct", "per_dimension"):
        with pytest.raises(InvalidInputError, match="has no input (DRAW|PER_DIMENSION)"):
            plan_sample(info, 256, 4, 0, draw=draw)
    with pytest.raises(InvalidInputError, match="has no input BASE"):
        plan_sample(info, 256, 4, 0, base=np.zeros(12, np.float32), mask=np.ones(4, bool))


@pytest.fixture(scope="module")
def native_repo(tmp_path_factory, trained_run):
    from sae.export.model_set import export_run

    repo = tmp_path_factory.mktemp("native") / "model_repository"
    export_run(trained_run, repo, options=RepositoryOptions(flavour="native"), range_images=256)
    return repo


def test_native_export_validates_and_its_graph_draws_what_a_client_computes(native_repo):
    assert [str(p) for p in validate_repository(native_repo) if p.severity == "error"] == []
    bank = Bank.load(native_repo / "sampler" / "1" / "bank.h5")
    decode = ort.InferenceSession(str(native_repo / "decode" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    hybrid = ort.InferenceSession(
        str(native_repo / "hybrid_sample" / "1" / "model_hybrid.onnx"), providers=["CPUExecutionProvider"]
    )
    for seed, n in [(0, 1), (5, 17), (2**63 - 1, 3)]:
        images, images_u8, latents, source, mode = hybrid.run(
            None, {"NUM_SAMPLES": np.array([n], np.int64), "SEED": np.array([seed], np.int64)}
        )
        assert list(mode) == [b"independent"] or list(mode) == ["independent"]
        assert np.array_equal(source, source_index(seed, n, bank.num_variables, len(bank.latents)))
        assert np.array_equal(latents, bank.latents[source[:, bank.variable_of_dim], np.arange(bank.latent_dim)])
        assert np.array_equal(images, decode.run(None, {"LATENT": latents})[0])
        assert np.array_equal(images_u8, to_uint8(images))


def test_joined_reconstruction_graph_equals_encode_then_decode(exported_repo):
    images = np.random.default_rng(3).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    folder = exported_repo / "reconstruct" / "1"
    assert (
        check_reconstruction(
            exported_repo / "encode" / "1" / "model.onnx",
            exported_repo / "decode" / "1" / "model.onnx",
            folder / "model.onnx",
            images,
        )
        == 0.0
    )


def test_validator_checks_the_decoder_graph_and_draw_modes_of_a_one_hop_sampler(exported_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exported_repo, repo)
    shutil.copyfile(repo / "encode" / "1" / "model.onnx", repo / "hybrid_sample" / "1" / "model.onnx")
    (repo / "hybrid_sample" / "1" / "sae_draw.py").unlink()
    config = repo / "hybrid_sample" / "config.pbtxt"
    bls = 'key: "decode_model"\n  value {\n    string_value: "decode"'
    assert bls in config.read_text()
    config.write_text(
        config.read_text()
        .replace('string_value: "independent,distinct,per_dimension"', 'string_value: "independent,grouped"')
        .replace(bls, 'key: "onnx_file"\n  value {\n    string_value: "model.onnx"')
    )  # in-process
    messages = [str(p) for p in validate_repository(repo) if p.severity == "error"]
    assert (
        "hybrid_sample: parameters.draw_modes: ['grouped']: each must be one of independent, distinct, "
        "per_dimension" in messages
    )
    assert "hybrid_sample: backend: hybrid_sample/1/sae_draw.py is missing" in messages
    assert any(m.startswith("hybrid_sample: input LATENT: model.onnx has no input of that name") for m in messages)
    assert read_config(config).backend == "python"


def test_validator_checks_the_decoder_a_sampler_calls(exported_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(exported_repo, repo)
    config = repo / "hybrid_sample" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "decode"', 'string_value: "dekode"'))
    messages = [str(p) for p in validate_repository(repo) if p.severity == "error"]
    assert messages == ["hybrid_sample: parameters.decode_model: names model 'dekode', which is not in the repository"]


def test_sae_export_can_keep_the_sampler_decoding_in_its_own_process(trained_run, tmp_path, capsys):
    from conftest import copy_repository

    from sae.cli import main

    repo = copy_repository(tmp_path / "repo")
    assert main(["export", str(trained_run), "--repo", str(repo), "--sample-decoding", "in_process"]) == 0
    capsys.readouterr()
    hybrid = read_config(repo / "hybrid_sample" / "config.pbtxt")
    assert hybrid.parameters["onnx_file"].string_value == "model.onnx" and "decode_model" not in hybrid.parameters
    assert hybrid.instance_group[0].count == 2
    assert (repo / "hybrid_sample" / "1" / "model.onnx").is_file()
    assert [str(p) for p in validate_repository(repo) if p.severity == "error"] == []
