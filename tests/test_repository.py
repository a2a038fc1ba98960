"""Two different models exported side by side into one repository and served by a real Triton server (python
flavour), every model of each checked against the eager model; the draw modes of hybrid sampling on the wire;
controllable generation with MASK; prior samples of the model with a prior (and none for the SAE); `sae eval` on
the VAE set; the validator on the native flavour and on hand-broken configs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_repository, module_server, short_run

from sae.export.bank import Bank
from sae.export.graphs import graph_specs
from sae.repository.configs import RepositoryOptions
from sae.repository.templates.sampler_model import DRAW_MODES, draw_hybrid, draw_prior
from sae.repository.templates.traverse_model import traversal
from sae.repository.validate import check_repository, validate_repository

MODELS = {"sae4": "sae4-tiny", "vae": "betavae-tiny"}  # export name -> named config (k = 4 of 3 dims; k = D = 12)
STEPS = 20  # a handful: the checks compare the server with the same weights run eagerly
ATOL = 1e-4  # served (ONNX Runtime fp32) vs eager; measured differences are ~1e-6


@pytest.fixture(scope="session")
def runs(tmp_path_factory, shapes_file) -> dict[str, Path]:
    return {name: short_run(tmp_path_factory, shapes_file, config, STEPS) for name, config in MODELS.items()}


@pytest.fixture(scope="session")
def two_model_repo(tmp_path_factory, runs) -> Path:
    from sae.export.model_set import export_run

    repo = copy_repository(tmp_path_factory.mktemp("two-models") / "model_repository")
    for name, run in runs.items():
        export_run(run, repo, name=name, validate=check_repository)
    return repo


@pytest.fixture(scope="session")
def eager(runs) -> dict[str, dict]:
    """Per export name: the eager served graphs (encode: uint8 HWC -> latent; decode: latent -> HWC in [0, 1])."""
    from sae.training.checkpoint import Checkpoint
    from sae.training.models.zoo import build_model

    out = {}
    for name, run in runs.items():
        ckpt = Checkpoint.load(run)
        model = build_model(ckpt.config.model)
        model.load_state_dict(ckpt.model_state)
        specs = graph_specs(model.eval())
        out[name] = {
            graph: (lambda x, m=spec.module: m(torch.from_numpy(np.array(x))).detach().numpy())
            for graph, spec in specs.items()
        }
    return out


@pytest.fixture(scope="module")
def server(two_model_repo, tmp_path_factory):
    with module_server(two_model_repo, tmp_path_factory, "two-models-server") as s:
        yield s


def infer(raw, model: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for key, array in inputs.items():
        t = grpcclient.InferInput(key, list(array.shape), np_to_triton_dtype(array.dtype))
        t.set_data_from_numpy(array)
        tensors.append(t)
    result = raw.infer(model, tensors)
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response(as_json=True)["outputs"]}


def sample_inputs(n: int, seed: int, **extra) -> dict[str, np.ndarray]:
    return {"NUM_SAMPLES": np.array([n], np.int64), "SEED": np.array([seed], np.int64), **extra}


@pytest.fixture(scope="module")
def test_images(shapes_file) -> np.ndarray:
    from sae.core.datasets import H5Images, split_indices

    data = H5Images(shapes_file)
    return data.read(split_indices(len(data))["test"][:6])


def bank_of(repo: Path, name: str) -> Bank:
    from sae.repository.layout import versions

    newest = versions(repo / f"{name}_sampler")[-1]  # a re-export writes the next version
    return Bank.load(repo / f"{name}_sampler" / str(newest) / "bank.h5")


# --------------------------------------------------------------------------------------------- the repository


def test_both_models_are_in_one_valid_repository(two_model_repo):
    folders = {p.name for p in two_model_repo.iterdir() if p.is_dir()}
    roles = ("encode", "decode", "reconstruct", "hybrid_sample", "traverse", "sampler")
    prior_roles = ("prior_sampler", "prior_sample")  # the β-VAE has a prior, the SAE none
    assert folders == {f"{name}_{role}" for name in MODELS for role in roles} | {f"vae_{r}" for r in prior_roles}
    assert [p for p in validate_repository(two_model_repo) if p.severity == "error"] == []
    assert bank_of(two_model_repo, "sae4").num_variables == 4 and bank_of(two_model_repo, "vae").num_variables == 12
    vae = bank_of(two_model_repo, "vae")
    assert np.array_equal(vae.prior_mean, np.zeros(12)) and np.array_equal(vae.prior_std, np.ones(12))
    assert bank_of(two_model_repo, "sae4").prior_mean is None


# --------------------------------------------------------------------------------------------- all five models


@pytest.mark.server
@pytest.mark.parametrize("name", MODELS)
def test_encode_decode_reconstruct_match_the_eager_model(raw, eager, name, test_images):
    latents = infer(raw, f"{name}_encode", IMAGE=test_images)["LATENT"]
    assert latents.shape == (6, 12) and latents.dtype == np.float32
    assert np.allclose(latents, eager[name]["encode"](test_images), atol=ATOL)
    images = infer(raw, f"{name}_decode", LATENT=latents)["IMAGE"]
    assert images.shape == (6, 64, 64, 3) and 0 <= images.min() and images.max() <= 1
    assert np.allclose(images, eager[name]["decode"](latents), atol=ATOL)
    recon = infer(raw, f"{name}_reconstruct", IMAGE=test_images)["RECONSTRUCTION"]
    assert np.allclose(recon, eager[name]["decode"](eager[name]["encode"](test_images)), atol=ATOL)


@pytest.mark.server
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", DRAW_MODES)
def test_hybrid_sample_draws_from_the_bank_and_decodes(raw, eager, two_model_repo, name, mode):
    bank = bank_of(two_model_repo, name)
    out = infer(raw, f"{name}_hybrid_sample", **sample_inputs(5, 3, DRAW=np.array([mode.encode()], np.object_)))
    expected_latents, expected_source = draw_hybrid(bank.latents, bank.variable_of_dim, 5, 3, mode)
    assert np.array_equal(out["LATENT"], expected_latents) and np.array_equal(out["SOURCE_INDEX"], expected_source)
    assert out["SOURCE_INDEX"].shape == (5, 12 if mode == "per_dimension" else bank.num_variables)
    assert out["DRAW_MODE"].tolist() == [mode.encode()]
    assert np.allclose(out["IMAGE"], eager[name]["decode"](out["LATENT"]), atol=ATOL)


@pytest.mark.server
@pytest.mark.parametrize(
    "inputs,mode",
    [
        ({}, b"independent"),
        ({"PER_DIMENSION": np.array([False])}, b"independent"),
        ({"PER_DIMENSION": np.array([True])}, b"per_dimension"),
        ({"PER_DIMENSION": np.array([True]), "DRAW": np.array([b"per_dimension"], np.object_)}, b"per_dimension"),
    ],
)
def test_draw_mode_defaults_to_independent_and_per_dimension_still_works(raw, inputs, mode):
    assert infer(raw, "sae4_hybrid_sample", **sample_inputs(3, 1, **inputs))["DRAW_MODE"].tolist() == [mode]


@pytest.mark.server
def test_the_client_reports_the_mode_the_server_drew_with(server):
    from sae.clients.triton_client import SAEClient

    with SAEClient(server.grpc_url, model="sae4") as c:
        for mode in DRAW_MODES:
            assert c.sample(4, seed=2, draw=mode).draw_mode == mode
        assert c.sample(4, seed=2).draw_mode == "independent"
        assert c.sample(4, seed=2, per_dimension=True).draw_mode == "per_dimension"


@pytest.mark.server
@pytest.mark.parametrize("name", MODELS)
def test_traverse_sweeps_one_dimension_between_its_training_range(raw, eager, two_model_repo, name):
    bank = bank_of(two_model_repo, name)
    start = bank.latents[0]
    out = infer(raw, f"{name}_traverse", LATENT=start, DIMENSION=np.array([5], np.int64), STEPS=np.array([7], np.int64))
    assert np.array_equal(out["LATENT"], traversal(start, 5, 7, bank.dim_min, bank.dim_max))
    assert out["LATENT"][0, 5] == bank.dim_min[5] and out["LATENT"][-1, 5] == bank.dim_max[5]
    assert out["IMAGE"].shape == (7, 64, 64, 3)
    assert np.allclose(out["IMAGE"], eager[name]["decode"](out["LATENT"]), atol=ATOL)


# --------------------------------------------------------------------------------------------- controllable generation


@pytest.mark.server
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", DRAW_MODES)
def test_mask_with_every_variable_reproduces_hybrid_sample(raw, two_model_repo, name, mode):
    k = bank_of(two_model_repo, name).num_variables
    draw = np.array([mode.encode()], np.object_)
    plain = infer(raw, f"{name}_hybrid_sample", **sample_inputs(4, 11, DRAW=draw))
    base = np.random.default_rng(0).normal(size=(1, 12)).astype(np.float32)
    masked = infer(raw, f"{name}_hybrid_sample", **sample_inputs(4, 11, DRAW=draw, BASE=base, MASK=np.ones(k, bool)))
    for key in ("IMAGE", "LATENT", "SOURCE_INDEX", "DRAW_MODE"):
        assert np.array_equal(plain[key], masked[key]), key


@pytest.mark.server
@pytest.mark.parametrize("name", MODELS)
def test_mask_with_no_variable_returns_the_decoded_base(raw, two_model_repo, name):
    k = bank_of(two_model_repo, name).num_variables
    bases = bank_of(two_model_repo, name).latents[[3, 9, 27]]  # one base per sample
    out = infer(raw, f"{name}_hybrid_sample", **sample_inputs(3, 0, BASE=bases, MASK=np.zeros(k, bool)))
    assert np.array_equal(out["LATENT"], bases) and (out["SOURCE_INDEX"] == -1).all()
    assert np.allclose(out["IMAGE"], infer(raw, f"{name}_decode", LATENT=bases)["IMAGE"], atol=1e-6)


@pytest.mark.server
def test_masked_variables_are_redrawn_and_the_others_kept(raw, two_model_repo):
    bank = bank_of(two_model_repo, "sae4")  # 4 variables of 3 dimensions
    base = bank.latents[:1]
    mask = np.array([False, True, False, True])
    out = infer(raw, "sae4_hybrid_sample", **sample_inputs(8, 5, BASE=base, MASK=mask))
    source = out["SOURCE_INDEX"]
    assert (source[:, [0, 2]] == -1).all() and (source[:, [1, 3]] >= 0).all()
    for v in range(4):
        chunk = slice(3 * v, 3 * v + 3)
        expected = bank.latents[source[:, v], chunk] if mask[v] else np.repeat(base[:, chunk], 8, axis=0)
        assert np.array_equal(out["LATENT"][:, chunk], expected)


@pytest.mark.server
@pytest.mark.parametrize(
    "model,inputs,names",
    [
        ("sae4_hybrid_sample", sample_inputs(2, 0, MASK=np.ones(4, bool)), "MASK needs BASE"),
        ("sae4_hybrid_sample", sample_inputs(2, 0, BASE=np.zeros((1, 12), np.float32)), "BASE needs MASK"),
        ("sae4_hybrid_sample", sample_inputs(2, 0, BASE=np.zeros((1, 12), np.float32), MASK=np.ones(3, bool)), "MASK"),
        ("sae4_hybrid_sample", sample_inputs(2, 0, BASE=np.zeros((3, 12), np.float32), MASK=np.ones(4, bool)), "BASE"),
        ("vae_hybrid_sample", sample_inputs(257, 0), "NUM_SAMPLES must be in 1..256"),
        ("vae_hybrid_sample", sample_inputs(2, -1), "SEED"),
        ("vae_hybrid_sample", sample_inputs(2, 0, DRAW=np.array([b"groups"], np.object_)), "DRAW must be one of"),
        (
            "vae_hybrid_sample",
            sample_inputs(2, 0, DRAW=np.array([b"distinct"], np.object_), PER_DIMENSION=np.array([True])),
            "PER_DIMENSION=true",
        ),
        ("vae_prior_sample", sample_inputs(257, 0), "NUM_SAMPLES must be in 1..256"),
        ("vae_prior_sample", sample_inputs(2, -1), "SEED must be non-negative"),
        (
            "vae_traverse",
            {"LATENT": np.zeros(12, np.float32), "DIMENSION": np.array([12]), "STEPS": np.array([5])},
            "DIMENSION must be in 0..11",
        ),
        (
            "vae_traverse",
            {"LATENT": np.zeros(12, np.float32), "DIMENSION": np.array([0]), "STEPS": np.array([65])},
            "STEPS must be in 2..64",
        ),
    ],
)
def test_bad_requests_get_errors_naming_the_input(raw, model, inputs, names):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=names):
        infer(raw, model, **inputs)
    assert raw.is_server_live() and raw.is_model_ready(model)


# --------------------------------------------------------------------------------------------- prior samples


@pytest.mark.server
def test_prior_sample_is_seeded_standard_normal_and_decoded(raw, eager, two_model_repo):
    bank = bank_of(two_model_repo, "vae")
    a, b = (
        infer(raw, "vae_prior_sample", **sample_inputs(256, 4)),
        infer(raw, "vae_prior_sample", **sample_inputs(256, 4)),
    )
    other = infer(raw, "vae_prior_sample", **sample_inputs(256, 5))
    assert a["IMAGE"].shape == (256, 64, 64, 3) and a["LATENT"].shape == (256, 12)
    assert np.array_equal(a["IMAGE"], b["IMAGE"]) and np.array_equal(a["LATENT"], b["LATENT"])
    assert not np.allclose(a["IMAGE"], other["IMAGE"])
    assert np.array_equal(a["LATENT"], draw_prior(bank.prior_mean, bank.prior_std, 256, 4))
    latents = np.concatenate([a["LATENT"], other["LATENT"]])  # 512 x 12 draws of N(0, 1)
    assert np.abs(latents.mean(axis=0)).max() < 0.25 and np.abs(latents.std(axis=0) - 1).max() < 0.15
    assert np.allclose(a["IMAGE"], eager["vae"]["decode"](a["LATENT"]), atol=ATOL)


@pytest.mark.server
def test_only_the_model_with_a_prior_serves_prior_samples(server):
    from sae.clients.triton_client import SAEClient
    from sae.core.errors import ModelNotServedError

    with SAEClient(server.grpc_url, model="vae") as vae, SAEClient(server.grpc_url, model="sae4") as sae:
        assert vae.has_prior() and not sae.has_prior()
        split = vae.prior_sample(300, seed=4)  # above the per-request limit: two requests, part 0 seeded 4
        assert split.images.shape == (300, 64, 64, 3)
        assert np.array_equal(split.latents[:256], vae.prior_sample(256, seed=4).latents)
        with pytest.raises(ModelNotServedError, match="sae4_prior_sample"):
            sae.prior_sample(2, seed=0)


@pytest.mark.server
def test_async_client_draws_the_same_prior_samples(server):
    import asyncio

    from sae.clients.aio import AsyncSAEClient
    from sae.clients.triton_client import SAEClient

    async def run():
        async with (
            AsyncSAEClient(server.grpc_url, model="vae") as ac,
            AsyncSAEClient(server.grpc_url, model="sae4") as sae,
        ):
            return await ac.has_prior(), await sae.has_prior(), await ac.prior_sample(300, seed=8)

    has, sae_has, samples = asyncio.run(run())
    assert has and not sae_has
    with SAEClient(server.grpc_url, model="vae") as c:
        assert np.array_equal(samples.latents, c.prior_sample(300, seed=8).latents)


@pytest.mark.server
def test_fast_eval_of_the_vae_set_scores_its_prior_samples(server, shapes_file, tmp_path):
    from sae.cli import main

    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "--data",
            str(shapes_file),
            "--url",
            server.grpc_url,
            "--model",
            "vae",
            "--out",
            str(out),
            "--fast",
            "--num-images",
            "64",
            "--train-codes",
            "100",
            "--stats-cache",
            str(tmp_path / "cache"),
        ]
    )
    assert rc == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["sampling"]["draw_mode"] == "independent" and result["sampling"]["bank_size"] == 128
    assert result["sampling"]["prior_samples"] == result["sampling"]["hybrid_samples"] == 64
    for name in ("FD-randconv", "FD-factor"):
        entry = result["distances"][name]
        assert isinstance(entry["prior_samples"], float) and math.isfinite(entry["prior_samples"])
        assert entry["prior_samples"] > 0 and entry["prior_samples"] != entry["hybrid_samples"]
    assert result["figures"]["prior_samples"]["images"] == 64
    assert (out / result["figures"]["prior_samples"]["path"]).is_file()
    report = (out / "report.md").read_text()
    assert "![Prior samples](figures/prior_samples.png)" in report and "draw mode **independent**" in report
    randconv_row = next(line for line in report.splitlines() if line.startswith("| FD-randconv |"))
    assert f"{result['distances']['FD-randconv']['prior_samples']:.4g}" in randconv_row


# ------------------------------------------------------------------------------------------ native flavour, validator


@pytest.fixture
def repo_copy(two_model_repo, tmp_path) -> Path:
    return Path(shutil.copytree(two_model_repo, tmp_path / "repo", symlinks=True))


def _native(runs: dict[str, Path], repo: Path, name: str, **option_changes) -> None:
    """Re-export one model set in the native flavour (`sae export --flavour native`) into ``repo``."""
    from sae.export.model_set import export_run

    export_run(
        runs[name], repo, options=RepositoryOptions(name=name, flavour="native", **option_changes), range_images=256
    )


@pytest.fixture(scope="module")
def native_repo(two_model_repo, runs, tmp_path_factory) -> Path:
    """Both sets re-exported native: sae4 with TensorRT, vae with the fp16 graphs."""
    repo = Path(shutil.copytree(two_model_repo, tmp_path_factory.mktemp("native") / "repo", symlinks=True))
    _native(runs, repo, "sae4", tensorrt=True)
    _native(runs, repo, "vae", gpu_precision="fp16")
    return repo


@pytest.fixture
def native_copy(native_repo, tmp_path) -> Path:
    return Path(shutil.copytree(native_repo, tmp_path / "native", symlinks=True))


def test_native_onnxruntime_flavour_validates(native_copy):
    from sae.repository.validate import read_config

    repo_copy = native_copy
    assert [p for p in validate_repository(repo_copy) if p.severity == "error"] == []
    encode = read_config(repo_copy / "sae4_encode" / "config.pbtxt")
    assert encode.platform == "onnxruntime_onnx" and encode.instance_group[0].kind == encode.instance_group[0].KIND_GPU
    trt = encode.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    assert encode.default_model_filename == "model.onnx"  # TensorRT builds its own fp16 engine from fp32
    assert read_config(repo_copy / "vae_decode" / "config.pbtxt").default_model_filename == "model_fp16.onnx"
    assert read_config(repo_copy / "vae_sampler" / "config.pbtxt").backend == "python"
    assert read_config(repo_copy / "vae_prior_sampler" / "config.pbtxt").backend == "python"
    assert read_config(repo_copy / "vae_prior_sample" / "config.pbtxt").platform == "ensemble"
    assert read_config(repo_copy / "vae_hybrid_sample" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert not (repo_copy / "sae4_prior_sample").exists()


def test_native_libtorch_flavour_validates_by_running_the_torchscript(runs, repo_copy):
    _native(runs, repo_copy, "vae", native_runtime="libtorch")
    assert [p for p in validate_repository(repo_copy) if p.severity == "error"] == []
    config = repo_copy / "vae_encode" / "config.pbtxt"
    config.write_text(
        config.read_text().replace(
            'name: "LATENT"\n  data_type: TYPE_FP32\n  dims: [12]',
            'name: "LATENT"\n  data_type: TYPE_FP32\n  dims: [11]',
        )
    )
    assert [str(p) for p in validate_repository(repo_copy) if p.model.startswith("vae_")] == [
        "vae_encode: output LATENT dims: config [11], model.pt returns [1, 12] for a batch of 1",
        "vae_reconstruct: ensemble_scheduling.step[1].input_map[LATENT]: vae_encode output LATENT has shape "
        "[-1, 11], vae_decode input LATENT takes [-1, 12]",
    ]


def test_validator_rejects_wrong_dims_naming_model_and_field(repo_copy):
    config = repo_copy / "sae4_decode" / "config.pbtxt"
    config.write_text(config.read_text().replace("dims: [12]", "dims: [10]", 1))
    with pytest.raises(ValueError) as err:
        check_repository(repo_copy)
    expected = "sae4_decode: input LATENT dims: config [10] (max_batch_size 256), model.onnx ['batch', 12]"
    assert expected in str(err.value)
    assert "vae_" not in str(err.value), "the other model's set is untouched"


def test_validator_rejects_a_missing_file_naming_model_and_field(repo_copy):
    (repo_copy / "vae_encode" / "1" / "model.onnx").unlink()
    (repo_copy / "sae4_sampler" / "1" / "bank.h5").unlink()
    messages = [str(p) for p in validate_repository(repo_copy)]
    assert "vae_encode: parameters.onnx_file: vae_encode/1/model.onnx is missing" in messages
    assert "sae4_sampler: bank: sae4_sampler/1/bank.h5 is missing" in messages


def test_validator_rejects_an_ensemble_mapping_a_tensor_no_step_produces(native_copy):
    repo_copy = native_copy
    config = repo_copy / "vae_prior_sample" / "config.pbtxt"
    text = config.read_text()
    head, tail = text.rsplit('key: "LATENT"\n      value: "LATENT"', 1)
    config.write_text(head + 'key: "LATENT"\n      value: "LATENTS"' + tail)
    messages = [str(p) for p in validate_repository(repo_copy) if p.severity == "error"]
    assert messages == [
        "vae_prior_sample: ensemble_scheduling.step[1].input_map[LATENT]: maps tensor 'LATENTS', "
        "which no step produces and which is not an ensemble input"
    ]


def test_validator_rejects_unknown_step_models_and_bad_bls_targets(native_copy):
    repo_copy = native_copy
    config = repo_copy / "vae_prior_sample" / "config.pbtxt"
    config.write_text(config.read_text().replace('model_name: "vae_decode"', 'model_name: "vae_decoder"'))
    traverse = repo_copy / "sae4_traverse" / "config.pbtxt"
    traverse.write_text(traverse.read_text().replace('string_value: "sae4_decode"', 'string_value: "nope"'))
    messages = [str(p) for p in validate_repository(repo_copy)]
    assert (
        "vae_prior_sample: ensemble_scheduling.step[1].model_name: 'vae_decoder' is not a model in the repository"
        in messages
    )
    assert "sae4_traverse: parameters.decode_model: names model 'nope', which is not in the repository" in messages


def test_validator_rejects_a_prior_sampler_whose_bank_has_no_prior(repo_copy):
    import h5py

    with h5py.File(repo_copy / "vae_prior_sampler" / "1" / "bank.h5", "a") as f:
        del f["prior_mean"], f["prior_std"]
    messages = [str(p) for p in validate_repository(repo_copy) if p.severity == "error"]
    assert messages == [
        "vae_prior_sampler: bank: bank.h5 has no prior of 12 dimensions (prior_mean, prior_std; "
        "found none): only a model with a prior can serve prior samples"
    ]


def test_validator_rejects_a_broken_prior_sample_ensemble_and_a_wrong_bank_size(native_copy):
    repo_copy = native_copy
    (repo_copy / "vae_prior_sampler" / "1" / "bank.h5").unlink()
    config = repo_copy / "vae_prior_sample" / "config.pbtxt"
    config.write_text(config.read_text().replace('model_name: "vae_prior_sampler"', 'model_name: "vae_prior"'))
    sampler = repo_copy / "sae4_sampler" / "config.pbtxt"
    sampler.write_text(sampler.read_text().replace('string_value: "128"', 'string_value: "64"'))
    messages = [str(p) for p in validate_repository(repo_copy) if p.severity == "error"]
    assert "vae_prior_sampler: bank: vae_prior_sampler/1/bank.h5 is missing" in messages
    assert (
        "vae_prior_sample: ensemble_scheduling.step[0].model_name: 'vae_prior' is not a model in the repository"
        in messages
    )
    assert "sae4_sampler: parameters.bank_size: config 64, bank.h5 holds 128 latents" in messages


def test_re_exporting_a_name_without_a_prior_removes_its_prior_models(runs, repo_copy):
    from sae.export.model_set import export_run

    export_run(runs["sae4"], repo_copy, name="vae", validate=check_repository)  # "vae" is now an SAE-4
    folders = {p.name for p in repo_copy.iterdir() if p.is_dir()}
    assert "vae_prior_sample" not in folders and "vae_prior_sampler" not in folders and "vae_sampler" in folders
    assert bank_of(repo_copy, "vae").prior_mean is None
    assert [p for p in validate_repository(repo_copy) if p.severity == "error"] == []
