"""`sae encode --engine ray` without a cluster: no Ray at import time, settings, the shard plan, the manifest's
refusals, shard files in the single file's layout, and the merge's refusal of a folder with missing shards."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from sae.clients.jobs.ray_encode.config import RayEncodeConfig, resolve_url
from sae.clients.jobs.ray_encode.shards import (
    Manifest,
    Shard,
    check_manifest,
    complete_shards,
    merge_shards,
    missing_shards,
    plan_shards,
    read_manifest,
    shard_path,
    write_manifest,
    write_shard,
)
from sae.core.datasets import H5Images
from sae.core.errors import EncodeJobError
from sae.core.latents_file import fingerprint, identity_of, label_column

ROOT = Path(__file__).resolve().parents[1]


def test_no_core_or_client_module_imports_ray():
    code = (
        "import sys\n"
        "import sae.clients.triton_client, sae.clients.jobs.encode_job, sae.core.datasets, sae.cli\n"
        "from sae import clients\n"
        "import sae.clients.jobs.ray_encode, sae.clients.jobs.ray_encode.config, sae.clients.jobs.ray_encode.shards\n"
        "import sae.clients.jobs.ray_encode.actor, sae.clients.jobs.ray_encode.job\n"
        "sae.cli.build_parser()\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_the_core_and_client_installs_do_not_require_ray():
    text = (ROOT / "pyproject.toml").read_text()
    core = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    extras = text.split("[project.optional-dependencies]", 1)[1].split("[project.scripts]", 1)[0]
    assert "ray" not in core.lower()
    rows = {line.split("=", 1)[0].strip(): line for line in extras.splitlines() if "=" in line}
    assert "ray[data]" in rows["scale"] and all("ray" not in rows[k] for k in rows if k != "scale")
    assert re.search(r'-e "\.\[[a-z,]*\bscale\b', (ROOT / "Makefile").read_text()), (
        "CI (make test) installs the scale extra"
    )


def test_settings_refuse_nonsense_naming_the_option(tmp_path):
    for changes, match in [
        (dict(actors=0), "--actors"),
        (dict(shard_rows=300, batch_size=256), "multiple of"),
        (dict(urls=("node:http",)), "node:PORT"),
        (dict(urls=()), "--url"),
        (dict(out=tmp_path / "x.h5"), "must be a folder"),
        (dict(block_attempts=0), "attempts"),
        (dict(max_images_per_second=0), "--max-rate"),
    ]:
        with pytest.raises(ValueError, match=match):
            RayEncodeConfig(data=tmp_path / "d.h5", **{"out": tmp_path / "out", **changes})


def test_node_urls_resolve_to_the_actors_own_node():
    assert resolve_url("node:8001", "10.1.2.3") == "10.1.2.3:8001"
    assert resolve_url("127.0.0.1:9001", "10.1.2.3") == "127.0.0.1:9001"


def test_the_plan_covers_every_row_once():
    shards = plan_shards(1000, 256)
    assert [(s.start, s.stop) for s in shards] == [(0, 256), (256, 512), (512, 768), (768, 1000)]
    assert sum(s.rows for s in shards) == 1000 and shards[-1].describe() == "images 768..999"


def small_manifest(data: H5Images, shard_rows: int = 32, model: str = "") -> Manifest:
    labels = label_column(data)
    return Manifest(
        identity=identity_of(model, data, fingerprint(data)),
        source_path=str(data.path.resolve()),
        probe_latent=[0.5] * 4,
        batch_size=16,
        shard_rows=shard_rows,
        label_key=labels.key,
        factor_names=list(labels.factor_names),
    )


@pytest.fixture
def data(shapes_file) -> H5Images:
    return H5Images(shapes_file)


def test_a_folder_of_another_encoding_is_refused_naming_what_differs(data, tmp_path):
    manifest = small_manifest(data)
    write_manifest(tmp_path, manifest)
    found = read_manifest(tmp_path)
    assert found == manifest
    check_manifest(tmp_path, found, small_manifest(data))  # the same settings: accepted
    with pytest.raises(EncodeJobError, match=r"model: file has '', this run 'other'"):
        check_manifest(tmp_path, found, small_manifest(data, model="other"))
    with pytest.raises(EncodeJobError, match=r"shard_rows: file has 32, this run 64"):
        check_manifest(tmp_path, found, small_manifest(data, shard_rows=64))
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(EncodeJobError, match="is not a manifest of latent shards"):
        read_manifest(tmp_path)


def test_a_shard_has_the_single_files_layout_over_its_rows(data, tmp_path):
    manifest = small_manifest(data)
    shard = Shard(32, 64)
    latents = np.arange(32 * 4, dtype=np.float32).reshape(32, 4)
    path = write_shard(tmp_path, manifest, shard, latents, label_column(data))
    assert path == shard_path(tmp_path, shard) and complete_shards(tmp_path) == {shard}
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["committed", "labels", "latents"]
        assert np.array_equal(f["latents"][()], latents) and int(f["committed"][()]) == 32
        assert np.array_equal(f["labels"][()], data.read_labels(slice(32, 64)))
        assert list(f["labels"].attrs["factor_names"]) == list(data.factor_names)
        assert (f.attrs["rows_start"], f.attrs["rows_stop"]) == (32, 64)
        assert f.attrs["source_fingerprint"] == manifest.identity["source_fingerprint"]
    with pytest.raises(EncodeJobError, match=r"images 0..31: got latents of shape \[31, 4\]"):
        write_shard(tmp_path, manifest, Shard(0, 32), latents[:31], None)
    assert not list((tmp_path / "shards").glob("*.tmp")), "a failed write leaves nothing behind"


def test_merge_refuses_a_folder_with_missing_shards_naming_their_rows(data, tmp_path):
    manifest = small_manifest(data, shard_rows=1024)
    write_manifest(tmp_path, manifest)
    write_shard(tmp_path, manifest, Shard(0, 1024), np.zeros((1024, 4), np.float32), label_column(data))
    assert missing_shards(tmp_path, manifest) == [Shard(1024, 2048)]
    with pytest.raises(EncodeJobError, match=r"1 of 2 shards are missing \(images 1,024..2,047\)"):
        merge_shards(tmp_path, tmp_path / "latents.h5")
    assert not list(tmp_path.glob("latents.h5*"))
    with pytest.raises(EncodeJobError, match="has no manifest.json"):
        merge_shards(tmp_path / "shards", tmp_path / "latents.h5")


def test_merge_joins_shards_into_one_file_of_every_row(data, tmp_path):
    manifest = small_manifest(data, shard_rows=1000)
    write_manifest(tmp_path, manifest)
    expected = np.random.default_rng(0).normal(size=(len(data), 4)).astype(np.float32)
    for shard in manifest.shards():
        write_shard(tmp_path, manifest, shard, expected[shard.start : shard.stop], label_column(data))
    report = merge_shards(tmp_path / ".", tmp_path / "latents.h5")
    assert report.merged and report.shards == 3
    with h5py.File(report.out, "r") as f:
        assert np.array_equal(f["latents"][()], expected) and int(f["committed"][()]) == len(data)
        assert np.array_equal(f["labels"][()], data.read_labels(slice(0, len(data))))
        assert "rows_start" not in f.attrs and list(f.attrs["probe_latent"]) == [0.5] * 4
    assert not merge_shards(tmp_path, report.out).merged, "a finished file is left alone"


def test_the_report_names_every_failed_row_range():
    from sae.clients.jobs.ray_encode.job import RayEncodeReport

    report = RayEncodeReport(
        Path("out"),
        2048,
        8,
        2,
        5,
        1280,
        2.0,
        failed=[{"start": 512, "stop": 768, "error": "no server could encode them"}],
    )
    line = report.summary()
    assert "encoded 5 of 8 shards (1,280 images), 2 were already done" in line
    assert "1 shard FAILED (images 512..767: no server could encode them)" in line
    assert "run the same command again" in line


def test_without_ray_the_engine_says_which_extra_to_install(tmp_path):
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def guarded(name, *a, **k):\n"
        "    if name == 'ray' or name.startswith('ray.'):\n"
        "        raise ImportError('No module named ray')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guarded\n"
        "from sae.cli import main\n"
        f"sys.exit(main(['encode', 'data.h5', '--out', {str(tmp_path / 'out')!r}, '--engine', 'ray']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr  # a missing extra is no usage error: exit 1, with the install line
    assert "--engine ray needs Ray" in out.stderr and "sae-serving[scale]" in out.stderr
