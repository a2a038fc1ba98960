"""Truncated, corrupt, hostile or absurd files: one error line naming the file and what is wrong, no traceback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from sae.cli import main


def one_error_line(argv: list[str], capsys) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0, captured
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"sae {argv[0]}: error: "), lines[0]
    return lines[0]


class RunsCodeWhenUnpickled:
    """What a hostile .pt carries: unpickling it would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_bearing_checkpoint_is_refused_without_running_its_code(tmp_path, capsys):
    import torch

    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"config": "{}", "model": RunsCodeWhenUnpickled(marker), "step": 1}, hostile)
    line = one_error_line(["export", str(hostile), "--repo", str(tmp_path / "repo")], capsys)
    assert str(hostile) in line and "not a readable checkpoint" in line, line
    assert not marker.exists(), "torch.load ran the pickle's code: checkpoints must load with weights_only=True"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_line_naming_it(trained_run, tmp_path, capsys, damage):
    original = (trained_run / "checkpoints" / "last.pt").read_bytes()
    broken = tmp_path / f"{damage}.pt"
    broken.write_bytes({"truncated": original[: len(original) // 2], "garbage": os.urandom(4096), "empty": b""}[damage])
    line = one_error_line(["export", str(broken), "--repo", str(tmp_path / "repo")], capsys)
    assert str(broken) in line and "not a readable checkpoint" in line, line


def test_a_checkpoint_of_someone_else_is_refused(tmp_path, capsys):
    import torch

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    line = one_error_line(["export", str(foreign), "--repo", str(tmp_path / "repo")], capsys)
    assert str(foreign) in line and "missing config/model/step" in line, line


# ---------------------------------------------------------------------------------------------- banks


def write_bank(path: Path, n: int = 8, dim: int = 12, **changes) -> Path:
    arrays = {
        "latents": np.zeros((n, dim), np.float32),
        "variable_of_dim": np.arange(dim),
        "source_indices": np.arange(n),
        "dim_min": -np.ones(dim, np.float32),
        "dim_max": np.ones(dim, np.float32),
    }
    arrays.update(changes)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f[key] = value
        f.attrs.update(
            seed=0, model_name="m", data_sha256="0", checkpoint_sha256="0", checkpoint_step=1, num_train_images=n
        )
    return path


def test_a_bank_that_declares_absurd_sizes_is_refused_before_reading(tmp_path):
    from sae.export.bank import Bank, BankError

    path = tmp_path / "bank.h5"
    with h5py.File(path, "w") as f:  # a few KiB on disk, 52 TB once read
        f.create_dataset("latents", (2**40, 12), np.float32, chunks=(1, 12))
        for key, value in {
            "variable_of_dim": np.arange(12),
            "source_indices": np.arange(4),
            "dim_min": np.zeros(12, np.float32),
            "dim_max": np.ones(12, np.float32),
        }.items():
            f[key] = value
    assert path.stat().st_size < 1 << 20
    with pytest.raises(
        BankError,
        match=r"bank.h5: latents must be float \[N, D\] with N in 1..1048576.*"
        r"declares float32 \[1099511627776, 12\]",
    ):
        Bank.load(path)


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"latents": np.zeros((8, 12), np.int32)}, r"latents must be float"),
        ({"latents": np.zeros((8, 12, 1), np.float32)}, r"latents must be float \[N, D\]"),
        ({"dim_min": np.zeros(5, np.float32)}, r"dim_min must be float \[12\]"),
        ({"variable_of_dim": np.zeros(12, np.float32)}, r"variable_of_dim must be integer \[12\]"),
        ({"source_indices": np.arange(3)}, r"source_indices must be integer \[8\]"),
        ({"dim_max": None}, r"lacks \['dim_max'\]"),
    ],
)
def test_a_bank_with_wrong_arrays_names_the_file_and_the_array(tmp_path, changes, match):
    from sae.export.bank import Bank, BankError

    with pytest.raises(BankError, match=match) as error:
        Bank.load(write_bank(tmp_path / "bank.h5", **changes))
    assert str(tmp_path / "bank.h5") in str(error.value)


def test_a_truncated_bank_is_a_bank_error(tmp_path):
    from sae.export.bank import Bank, BankError

    path = write_bank(tmp_path / "bank.h5")
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(BankError, match="is not a readable bank file"):
        Bank.load(path)


# ---------------------------------------------------------------------------------------------- repositories


@pytest.fixture
def repo_copy(exported_repo, tmp_path) -> Path:
    return Path(shutil.copytree(exported_repo, tmp_path / "repo", symlinks=True))


@pytest.mark.parametrize(
    "target,damage,match",
    [
        ("decode/config.pbtxt", b"\xff\xfe binary \x00", "config.pbtxt: does not parse as a Triton ModelConfig"),
        ("decode/config.pbtxt", b"name: 'decode' max_batch_size: {", "config.pbtxt: does not parse"),
        ("encode/1/model.onnx", b"not an onnx graph", "model.onnx"),
        ("sampler/1/bank.h5", b"\x89HDF\r\n\x1a\n truncated", "bank.h5 is not a readable bank"),
    ],
)
def test_sae_validate_names_the_damaged_file(repo_copy, capsys, target, damage, match):
    path = repo_copy / target
    path.unlink()
    path.write_bytes(damage)
    code = main(["validate", "--repo", str(repo_copy)])
    out = capsys.readouterr().out
    assert code == 1 and "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert any(match in line for line in errors), out


# ---------------------------------------------------------------------------------------------- data files


@pytest.mark.parametrize(
    "layout,match",
    [
        ({"pictures": np.zeros((4, 64, 64, 3), np.uint8)}, "images"),
        ({"images": np.zeros((4, 64, 64, 3), np.float32)}, "uint8"),
        ({"images": np.zeros((4, 64, 3), np.uint8)}, "shape|dims|64"),
    ],
)
def test_a_dataset_with_wrong_keys_dtypes_or_shapes_is_one_line(tmp_path, capsys, layout, match):
    import re

    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        for key, value in layout.items():
            f[key] = value
    line = one_error_line(
        ["encode", str(data), "--out", str(tmp_path / "latents.h5"), "--url", "127.0.0.1:1", "--timeout", "2"], capsys
    )
    assert str(data) in line and re.search(match, line), line


def test_a_corrupt_data_file_is_one_line(tmp_path, capsys):
    data = tmp_path / "data.h5"
    data.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2048))
    line = one_error_line(["encode", str(data), "--out", str(tmp_path / "latents.h5"), "--url", "127.0.0.1:1"], capsys)
    assert str(data) in line, line


def test_a_corrupt_partial_latents_file_is_one_line(tmp_path, capsys, shapes_file):
    partial = tmp_path / "latents.h5.partial"
    partial.write_bytes(os.urandom(4096))
    line = one_error_line(
        ["encode", str(shapes_file), "--out", str(tmp_path / "latents.h5"), "--url", "127.0.0.1:1", "--timeout", "2"],
        capsys,
    )
    assert "latents.h5" in line, line
