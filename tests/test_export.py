import json
import os

import numpy as np
import onnx
import pytest

from sae.export.bank import Bank, file_sha256, prior_moments
from sae.export.model_set import ExportError, checkpoint_file, export_run
from sae.repository.configs import ConfigError, RepositoryOptions
from sae.repository.install import InstallError, check_ownership, install
from sae.training.checkpoint import CheckpointError


def test_onnx_graphs_have_a_dynamic_batch_axis(exported_repo):
    for name, io in (("encode", ("IMAGE", "LATENT")), ("decode", ("LATENT", "IMAGE"))):
        graph = onnx.load(exported_repo / name / "1" / "model.onnx").graph
        assert [graph.input[0].name, graph.output[0].name] == list(io)
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert {"model.onnx", "model_fp16.onnx", "model.pt", "model.py"} <= set(os.listdir(exported_repo / name / "1"))


def test_export_records_parity_within_tolerance(exported_repo):
    manifest = json.loads((exported_repo / "decode" / "1" / "export.json").read_text())
    runtimes = {(p["graph"], p["runtime"]) for p in manifest["parity"]}
    assert runtimes == {(g, r) for g in ("encode", "decode") for r in ("onnx", "onnx_fp16", "torchscript")}
    assert all(p["max_abs_diff"] < (3e-2 if p["runtime"] == "onnx_fp16" else 1e-4) for p in manifest["parity"])
    assert manifest["export_name"] == "" and manifest["model"] == "decode" and manifest["flavour"] == "python"


def test_bank_records_its_sources_ranges_and_hashes(exported_repo, trained_run, shapes_file):
    import onnxruntime as ort

    from sae.core.datasets import H5Images, batches_in_order, split_indices

    bank = Bank.load(exported_repo / "sampler" / "1" / "bank.h5")
    assert bank.latents.shape == (128, 12) and bank.latents.dtype == np.float32
    assert np.array_equal(bank.variable_of_dim, np.arange(12))  # SAE-12: one dimension per variable
    data = H5Images(shapes_file)
    train = split_indices(len(data))["train"]
    assert set(bank.source_indices) <= set(train) and len(np.unique(bank.source_indices)) == 128
    assert bank.num_train_images == len(train) and bank.seed == 0 and bank.model_name == "sae12-tiny"
    # dim_min / dim_max are taken over the whole training split: recompute them with the exported encoder
    session = ort.InferenceSession(
        str(exported_repo / "encode" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    latents = np.concatenate(
        [session.run(None, {"IMAGE": images})[0] for _, images in batches_in_order(data, train, 512)]
    )
    assert np.allclose(bank.dim_min, latents.min(0), atol=1e-4) and np.allclose(bank.dim_max, latents.max(0), atol=1e-4)
    assert (bank.latents >= bank.dim_min).all() and (bank.latents <= bank.dim_max).all()
    assert bank.data_sha256 == file_sha256(shapes_file)
    assert bank.checkpoint_sha256 == file_sha256(checkpoint_file(trained_run))
    assert bank.prior_mean is None and bank.prior_std is None  # SAE: no prior
    assert Bank.load(exported_repo / "traverse" / "1" / "bank.h5").checkpoint_sha256 == bank.checkpoint_sha256


def test_variational_models_store_their_standard_normal_prior():
    from sae.training.config import get_config
    from sae.training.models.zoo import build_model

    mean, std = prior_moments(build_model(get_config("betavae-tiny").model))
    assert np.array_equal(mean, np.zeros(12)) and np.array_equal(std, np.ones(12))
    assert prior_moments(build_model(get_config("ae-tiny").model)) is None


PRIOR_CONFIGS = ("vae-tiny", "betavae-tiny", "betatcvae-tiny", "factorvae-tiny", "wae-tiny", "vlae12-tiny")


@pytest.mark.parametrize("config_name", PRIOR_CONFIGS + ("sae12-tiny", "ae-tiny", "adaae12-tiny"))
def test_exactly_the_models_with_a_prior_are_served_prior_samples(config_name, one_torch_thread):
    """The served set follows the bank: a prior (N(0, I) for every prior model here) gives NAME_prior_sample."""
    from sae.repository.configs import ServedShapes, model_configs
    from sae.training.config import get_config
    from sae.training.models.zoo import build_model

    cfg = get_config(config_name).model
    prior = prior_moments(build_model(cfg))
    assert (prior is not None) == (config_name in PRIOR_CONFIGS)
    if prior is not None:
        assert np.array_equal(prior[0], np.zeros(cfg.latent_dim)) and np.array_equal(prior[1], np.ones(cfg.latent_dim))
    configs = model_configs(
        ServedShapes(64, cfg.latent_dim, len(cfg.variable_sizes), 128, prior is not None), RepositoryOptions(name="m")
    )
    has_prior_models = {"m_prior_sample", "m_prior_sampler"} <= set(configs)
    assert has_prior_models == (prior is not None)
    if has_prior_models:
        one_hop = configs["m_prior_sample"]  # draws in one python model, which decodes through m_decode (BLS)
        assert one_hop.backend == "python" and not one_hop.ensemble_scheduling.step
        assert one_hop.parameters["latents_from"].string_value == "prior"
        assert one_hop.parameters["decode_model"].string_value == "m_decode"
        assert [t.name for t in one_hop.input] == ["NUM_SAMPLES", "SEED"]
        assert [t.name for t in one_hop.output] == ["IMAGE", "LATENT"]
        assert configs["m_prior_sampler"].parameters["latents_from"].string_value == "prior"


@pytest.mark.parametrize("name", ["has space", "_lead", "a/b", "x" * 65])
def test_bad_names_are_refused_before_any_work(tmp_path, name):
    with pytest.raises(ConfigError, match="--name"):
        export_run(tmp_path / "no-run", tmp_path / "repo", name=name)
    assert not (tmp_path / "repo").exists()


def test_install_swaps_whole_model_folders(tmp_path):
    repo, staging = tmp_path / "repo", tmp_path / "staging"
    for root, text in ((repo, "old"), (staging, "new")):
        for model in ("m_encode", "m_reconstruct"):
            (root / model / "1").mkdir(parents=True)
            (root / model / "config.pbtxt").write_text(text)
    (staging / "m_decode" / "1").mkdir(parents=True)  # a model the repository does not have yet
    (staging / "m_decode" / "config.pbtxt").write_text("new")
    install(staging, repo, ["m_encode", "m_decode", "m_reconstruct"])
    assert {p.name for p in repo.iterdir()} == {"m_encode", "m_decode", "m_reconstruct"}
    assert all((repo / m / "config.pbtxt").read_text() == "new" for m in ("m_encode", "m_decode", "m_reconstruct"))
    leftovers = {p.name: (p / "config.pbtxt").read_text() for p in staging.iterdir()}
    assert set(leftovers.values()) == {"old"} and len(leftovers) == 2, "the old folders end up in staging"


@pytest.mark.parametrize("exchange", ["renameat2", "two renames"])
def test_a_re_export_by_either_install_path_leaves_a_valid_repository(exchange, tmp_path, trained_run, monkeypatch):
    """Where RENAME_EXCHANGE is unsupported (some file systems), install falls back to two renames per model; a
    re-export that way gives the same valid, versioned repository, and leaves nothing beside it."""
    from conftest import copy_repository

    from sae.repository import install as install_module
    from sae.repository.validate import validate_repository

    if exchange == "two renames":
        monkeypatch.setattr(install_module, "_exchange", lambda a, b: False)
    repo = copy_repository(tmp_path / "model_repository")
    before = set(tmp_path.iterdir())
    first = export_run(trained_run, repo, bank_seed=0)
    second = export_run(trained_run, repo, bank_seed=1)
    assert (first.version, second.version) == (1, 2)
    assert [str(p) for p in validate_repository(repo) if p.severity == "error"] == []
    assert all(
        sorted(p.name for p in (repo / m).iterdir() if p.name.isdigit()) == ["1", "2"]
        for m in second.models
        if (repo / m / "1").is_dir()
    )
    assert set(tmp_path.iterdir()) == before, "no staging folder is left beside the repository"


def test_a_reader_never_sees_a_model_folder_missing_or_half_replaced(tmp_path):
    import threading

    repo = tmp_path / "repo"
    (repo / "m" / "1").mkdir(parents=True)
    (repo / "m" / "config.pbtxt").write_text("v0")
    (repo / "m" / "1" / "model.onnx").write_text("v0")
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            # a server loads a model from one folder: hold the folder open and read both files from that same folder
            try:
                folder = os.open(repo / "m", os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                seen.append(("missing", "missing"))
                continue
            try:
                pair = []
                for name in ("config.pbtxt", "1/model.onnx"):
                    fd = os.open(name, os.O_RDONLY, dir_fd=folder)
                    with os.fdopen(fd) as f:
                        pair.append(f.read())
                seen.append(tuple(pair))
            except FileNotFoundError:
                seen.append(("missing", "missing"))
            finally:
                os.close(folder)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 200):
            staging = tmp_path / f"staging{i}"
            (staging / "m" / "1").mkdir(parents=True)
            (staging / "m" / "config.pbtxt").write_text(f"v{i}")
            (staging / "m" / "1" / "model.onnx").write_text(f"v{i}")
            install(staging, repo, ["m"])
    finally:
        stop.set()
        thread.join()
    assert len(seen) > 100 and (repo / "m" / "config.pbtxt").read_text() == "v199"
    torn = [s for s in seen if s[0] == "missing"]
    assert not torn, f"{len(torn)} of {len(seen)} reads found no model folder"
    expected = {f"v{i}" for i in range(200)}
    mixed = [s for s in seen if s[0] != s[1] or s[0] not in expected]
    assert not mixed, f"{len(mixed)} of {len(seen)} reads saw a half-replaced model folder, e.g. {mixed[:3]}"


def test_a_name_cannot_replace_another_exports_models(tmp_path):
    (tmp_path / "a_encode" / "1").mkdir(parents=True)
    (tmp_path / "a_encode" / "1" / "export.json").write_text(json.dumps({"export_name": "b"}))
    with pytest.raises(InstallError, match="belongs to the export named 'b'"):
        check_ownership(tmp_path, RepositoryOptions(name="a"))
    check_ownership(tmp_path, RepositoryOptions(name="b"))  # b may replace its own


def test_a_failed_export_changes_nothing(tmp_path, exported_repo, trained_run):
    import shutil

    repo = shutil.copytree(exported_repo, tmp_path / "repo", symlinks=True)
    before = {p: p.stat().st_mtime_ns for p in repo.rglob("*")}

    def refuse(staging):
        assert {p.name for p in staging.iterdir() if p.is_dir()} >= {"encode", "decode", "hybrid_sample"}
        raise ExportError("validator says no")

    with pytest.raises(ExportError, match="validator says no"):
        export_run(trained_run, repo, validate=refuse)
    assert {p: p.stat().st_mtime_ns for p in repo.rglob("*")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo.export-")], "staging is cleaned up"


def test_export_of_a_corrupt_checkpoint_fails_cleanly(tmp_path):
    bad = tmp_path / "run" / "checkpoints" / "last.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="not a readable checkpoint") as excinfo:
        export_run(tmp_path / "run", tmp_path / "repo")
    assert excinfo.type is CheckpointError and issubclass(CheckpointError, ValueError)
    assert str(bad) in str(excinfo.value)
    assert not (tmp_path / "repo").exists()


def test_bank_ranges_over_a_subset_keep_the_same_bank_and_include_its_rows(shapes_file, one_torch_thread):
    from sae.core.datasets import H5Images, split_indices
    from sae.export.bank import build_bank, encode_rows
    from sae.training.config import get_config
    from sae.training.models.zoo import build_model

    model = build_model(get_config("sae12-tiny").model)
    data = H5Images(shapes_file)
    train = split_indices(len(data))["train"]
    whole = build_bank(model, "sae12-tiny", data, train, shapes_file, 0, size=16, seed=3)
    subset = build_bank(model, "sae12-tiny", data, train, shapes_file, 0, size=16, seed=3, range_images=64)
    assert np.array_equal(subset.source_indices, whole.source_indices)  # the subset never changes which latents
    assert np.allclose(subset.latents, whole.latents, atol=1e-6)
    assert subset.num_train_images == 64 and whole.num_train_images == len(train)
    # the ranges hold the bank's own latents and lie within the whole split's
    assert (subset.latents >= subset.dim_min).all() and (subset.latents <= subset.dim_max).all()
    assert (subset.dim_min >= whole.dim_min - 1e-6).all() and (subset.dim_max <= whole.dim_max + 1e-6).all()
    assert np.allclose(encode_rows(model, data, whole.source_indices), whole.latents, atol=1e-6)
    with pytest.raises(Exception, match="range_images 8 must be at least the bank size 16"):
        build_bank(model, "sae12-tiny", data, train, shapes_file, 0, size=16, seed=3, range_images=8)


def test_a_folder_dataset_hashes_by_names_and_bytes(tmp_path):
    folder = tmp_path / "jpegs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"one")
    (folder / "sub" / "b.jpg").write_bytes(b"two")
    first = file_sha256(folder)
    (folder / "sub" / "b.jpg").write_bytes(b"twO")
    assert file_sha256(folder) != first
    (folder / "sub" / "b.jpg").write_bytes(b"two")
    assert file_sha256(folder) == first
    (folder / "sub" / "b.jpg").rename(folder / "sub" / "c.jpg")
    assert file_sha256(folder) != first
