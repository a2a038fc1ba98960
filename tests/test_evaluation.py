"""`sae eval` end to end against a real Triton server, the figures' local fallbacks, and the FID path's record."""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from sae.cli import main
from sae.clients.triton_client import SAEClient
from sae.evaluation import figures
from sae.evaluation.figures import chunk_masks, mix_variables, read_bank, traversal_latents

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and the IHDR chunk's CRC."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    length, tag = struct.unpack(">I4s", data[8:16])
    assert tag == b"IHDR" and struct.unpack(">I", data[16 + length : 20 + length])[0] == zlib.crc32(
        data[12 : 16 + length]
    )
    return struct.unpack(">II", data[16:24])


def walk(node, path=()):
    """(path, value) of every leaf of a JSON tree; dict keys are part of the path."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, path + (i,))
    else:
        yield path, node


# ------------------------------------------------------------------------------------------------ pure helpers


def test_local_traversal_and_mixing_change_only_what_they_should():
    start = np.arange(6, dtype=np.float32)
    lat = traversal_latents(start, 2, -1.0, 3.0, 5)
    np.testing.assert_array_equal(lat[:, 2], [-1, 0, 1, 2, 3])
    np.testing.assert_array_equal(np.delete(lat, 2, axis=1), np.repeat(np.delete(start, 2)[None], 5, axis=0))

    var_of_dim = figures.variable_of_dim(6, 3)  # three variables of two dimensions
    np.testing.assert_array_equal(var_of_dim, [0, 0, 1, 1, 2, 2])
    pool = (np.arange(10)[:, None] * 100 + np.arange(6)).astype(np.float32)  # row r, dimension d: 100 r + d
    mixed = mix_variables(start, np.array([False, True, False]), var_of_dim, pool, 50, np.random.default_rng(0))
    np.testing.assert_array_equal(mixed[:, [0, 1, 4, 5]], np.repeat(start[None, [0, 1, 4, 5]], 50, axis=0))
    rows = (mixed[:, 2] - 2) / 100
    assert np.all(rows == np.round(rows)) and len(np.unique(rows)) > 3  # whole variables from various pool rows
    np.testing.assert_array_equal(mixed[:, 3], mixed[:, 2] + 1)  # both dimensions from the same row

    masks = chunk_masks(12)
    assert [np.flatnonzero(m).tolist() for m in masks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    with pytest.raises(ValueError, match="does not split into 5"):
        figures.variable_of_dim(12, 5)


# ------------------------------------------------------------------------------------------------ the CLI's checks


def test_eval_refuses_an_inception_file_off_the_allow_list_before_any_work(shapes_file, tmp_path, capsys):
    impostor = tmp_path / "weights.pt"
    impostor.write_bytes(b"\0" * 64)
    rc = main(
        [
            "eval",
            "--data",
            str(shapes_file),
            "--out",
            str(tmp_path / "out"),
            "--url",
            "127.0.0.1:1",
            "--fid-images",
            "4",
            "--inception",
            str(impostor),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--inception" in err and str(impostor) in err and "SHA1" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def eval_cache(tmp_path_factory) -> Path:
    """One reference-statistics cache for this module's runs (the second run reuses the factor classifier)."""
    return tmp_path_factory.mktemp("eval-cache")


@pytest.fixture(scope="module")
def fast_eval(triton, shapes_file, tmp_path_factory, eval_cache):
    out = tmp_path_factory.mktemp("eval") / "out"
    cache = eval_cache
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(
            [
                "eval",
                "--data",
                str(shapes_file),
                "--url",
                triton.grpc_url,
                "--out",
                str(out),
                "--fast",
                "--num-images",
                "256",
                "--train-codes",
                "500",
                "--stats-cache",
                str(cache),
                "--json",
            ]
        )
    assert rc == 0
    result = json.loads((out / "eval.json").read_text())
    assert json.loads(printed.getvalue()) == result, "--json prints the document eval.json holds"
    return out, result, (out / "report.md").read_text()


@pytest.mark.server
def test_fast_eval_writes_json_markdown_and_figures_with_finite_numbers(fast_eval):
    out, result, report = fast_eval
    numbers = [(p, v) for p, v in walk(result) if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numbers and all(math.isfinite(v) for _, v in numbers)
    assert not [p for p, v in walk(result) if v is None and p[0] in ("reconstruction", "distances")]

    rec = result["reconstruction"]
    assert rec["images"] == 256 and rec["bce_per_image"] > 0 and 0 < rec["mse_per_pixel"] < 0.25
    for name in ("FD-factor", "FD-randconv"):
        entry = result["distances"][name]
        assert entry["images"] == 256 and entry["reference_cached"] is False
        assert len(entry["reference_data_sha1"]) == 40
        # the tiny model's blurry reconstructions and hybrid samples lie well beyond what sampling alone gives
        assert entry["reconstructions"] > 2 * entry["real_vs_real_floor"] > 0
        assert entry["hybrid_samples"] > 2 * entry["real_vs_real_floor"]
    assert result["distances"]["FID"]["status"].startswith("skipped: --fast")
    assert result["distances"]["prior_samples"].startswith("not applicable")
    assert all(
        result["distances"][name]["prior_samples"].startswith("not applicable")  # the SAE has no prior
        for name in ("FD-factor", "FD-randconv")
    )
    sampling = result["sampling"]
    assert sampling["draw_mode"] == "independent" and sampling["bank_size"] == 128
    assert sampling["num_variables"] == 12 and sampling["hybrid_samples"] == 256 and sampling["prior_samples"] == 0
    assert "draw mode **independent** from 128 stored training latents" in report
    assert len(result["distances"]["FD-factor"]["classifier_heldout_accuracy"]) == 6

    dis = result["disentanglement"]
    assert dis["summary"]["dci_regressor"] == "lasso" and dis["dci_gbt"]["status"].startswith("skipped")
    assert "Lasso" in dis["dci_lasso"]["label"] and 0 <= dis["summary"]["mig"] <= 1
    assert dis["train_codes"] == 500 and dis["test_codes"] == 256

    sizes = {name: png_size(out / fig["path"]) for name, fig in result["figures"].items()}
    assert set(sizes) == {"hybrid_samples", "reconstructions", "traversals", "hybridised_chunks"}
    # traversals: 12 rows of 9 steps (SAE-12: one dimension per variable); chunks: 2 bases x 4 quarters, 1 + 7 columns
    assert sizes["traversals"][0] == 2 + 9 * 66 and sizes["traversals"][1] >= 2 + 12 * 66
    assert sizes["hybridised_chunks"][0] == 2 + 8 * 66 and sizes["hybridised_chunks"][1] >= 2 + 8 * 66
    for name, fig in result["figures"].items():
        assert f"]({fig['path']})" in report, name


@pytest.mark.server
def test_only_the_inception_distance_is_ever_called_fid(fast_eval):
    out, result, report = fast_eval
    fid_paths = [
        p
        for p, v in walk(result)
        if any("fid" in str(part).lower() for part in p) or (isinstance(v, str) and "fid" in v.lower())
    ]
    assert fid_paths and all(p[:2] == ("distances", "FID") for p in fid_paths), fid_paths
    fid_lines = [line for line in report.splitlines() if "FID" in line]
    assert fid_lines and not [line for line in fid_lines if "FD-" in line or "randconv" in line or "factor" in line]
    assert "| FD-factor |" in report and "| FD-randconv |" in report


@pytest.mark.server
def test_procedural_scores_are_labelled_procedural(fast_eval):
    _, result, report = fast_eval
    assert result["data"]["label"] == "procedural" and result["data"]["procedural"] is True
    for section in (
        result["reconstruction"],
        result["distances"],
        result["distances"]["FD-factor"],
        result["distances"]["FD-randconv"],
        result["disentanglement"],
    ):
        assert section["data_label"] == "procedural"
    headings = [
        line for line in report.splitlines() if line.startswith("## ") and "Figures" not in line and "Time" not in line
    ]
    assert headings and all("(procedural)" in line for line in headings), headings


@pytest.mark.server
def test_local_fallback_figures_agree_with_the_served_models(triton, exported_repo, monkeypatch):
    """With the bank's ranges, a traversal built here and decoded equals the served `traverse`; the local chunk
    re-draws keep the unmasked variables of the base."""
    bank_file = next(exported_repo.glob("*traverse/1/bank.h5"))
    bank = read_bank(bank_file)
    with SAEClient(triton.grpc_url) as client:
        start = bank.latents[3]
        var_of_dim = figures.variable_of_dim(len(start), 12)
        served, served_by = figures.traversal_figure(client, start, var_of_dim, 5, bank.dim_min, bank.dim_max, "-")
        monkeypatch.setattr(figures, "serves", lambda *args, **kwargs: False)  # as against a server without them
        local, local_by = figures.traversal_figure(
            client, start, var_of_dim, 5, bank.dim_min, bank.dim_max, "the bank's min/max"
        )
        assert served_by.startswith("served") and local_by.startswith("local") and "bank's min/max" in local_by
        assert served.shape == local.shape
        assert np.abs(served.astype(int) - local.astype(int)).max() <= 1  # same latents, same decoder

        grid, chunks_by = figures.hybridised_chunks_figure(
            client, bank.latents[:1], var_of_dim, 3, 0, bank.latents, "bank latents"
        )
        assert chunks_by.startswith("local") and grid.shape == (2 + 4 * 66, 2 + 4 * 66, 3)
        base = client.decode(bank.latents[:1])
        first_cells = grid[2:66, 2:66]  # decode(base) starts every row
        assert np.abs(first_cells.astype(int) - np.clip(np.rint(base[0] * 255), 0, 255).astype(int)).max() <= 1


@pytest.mark.server
def test_fid_path_records_the_network_file_it_used(triton, shapes_file, tmp_path, monkeypatch, fast_eval, eval_cache):
    """The harness's FID path with a tiny TorchScript stand-in for the Inception file (the real one costs about
    100 ms per image and minutes per 2048x2048 square root; tests/test_frechet.py runs it on a few images)."""
    torch = pytest.importorskip("torch")
    from sae.evaluation import inception

    class Tiny(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)  # [N, 12] from the 299x299 input

    stand_in = tmp_path / "stand_in.pt"
    torch.jit.script(Tiny()).save(str(stand_in))
    sha1 = inception.file_sha1(stand_in)
    monkeypatch.setitem(inception.ALLOWED_INCEPTION_SHA1, sha1, "test stand-in")
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            "--data",
            str(shapes_file),
            "--url",
            triton.grpc_url,
            "--out",
            str(out),
            "--fast",
            "--num-images",
            "64",
            "--fid-images",
            "32",
            "--train-codes",
            "100",
            "--inception",
            str(stand_in),
            "--stats-cache",
            str(eval_cache),
        ]
    )
    assert rc == 0
    distances = json.loads((out / "eval.json").read_text())["distances"]
    assert distances["FD-factor"]["classifier_cached"] is True  # trained by the fast run, keyed by its data
    fid = distances["FID"]
    assert fid["inception"] == {"path": str(stand_in.resolve()), "sha1": sha1, "description": "test stand-in"}
    assert fid["images"] == 32 and fid["feature_dim"] == 12
    assert math.isfinite(fid["reconstructions"]) and fid["reconstructions"] > 0
    assert f"SHA1 `{sha1}`" in (out / "report.md").read_text()
